"""psql -X through the gateway, as a person would use it."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.databases import (
    TargetDb,
    client_env,
    pg_program,
    run_psql,
    wait_for_active,
)
from tests.support.gateway import RunningGateway


@pytest.fixture
def table(shop: TargetDb, unique: Callable[[str], str]) -> Iterator[str]:
    name = unique("psql")
    shop.execute(
        f"create table {name} (id int primary key, name text, price numeric(8,2));"
        f"alter table {name} owner to app;"
    )
    yield name
    shop.execute(f"set lock_timeout = '10s'; drop table if exists {name}")


def psql(gw: RunningGateway, *args: str, input: str | None = None, cwd: Path | None = None):
    return run_psql(
        gw.dsn("alice"),
        "-v",
        "ON_ERROR_STOP=1",
        *args,
        input=input,
        cwd=str(cwd) if cwd else None,
    )


def test_simple_query(gateway: RunningGateway) -> None:
    r = psql(gateway, "-A", "-t", "-c", "select current_user, 40 + 2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "app|42\n"


def test_multi_statement_query_string(gateway: RunningGateway, table: str) -> None:
    r = psql(
        gateway,
        "-A",
        "-c",
        f"insert into {table} values (1, 'a', 1.5), (2, 'b', 2.5); "
        f"update {table} set price = price * 2 where id = 2; "
        f"select id, name, price from {table} order by id",
    )
    assert r.returncode == 0, r.stderr
    # psql 15 shows the result of every statement of a multi-statement string.
    assert "INSERT 0 2" in r.stdout
    assert "UPDATE 1" in r.stdout
    assert "id|name|price\n1|a|1.50\n2|b|5.00\n(2 rows)" in r.stdout


def test_script_from_stdin(gateway: RunningGateway, table: str, shop: TargetDb) -> None:
    script = f"""
begin;
insert into {table} values (1, 'first', 10);
insert into {table} values (2, 'second', 20);
commit;
select sum(price) from {table};
\\echo done
"""
    r = psql(gateway, "-A", "-t", "-q", input=script)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "30.00\ndone\n"
    assert shop.query(f"select count(*) from {table}") == [(2,)]


def test_errors_are_reported_and_stop_the_script(
    gateway: RunningGateway, table: str, shop: TargetDb
) -> None:
    script = f"""
insert into {table} values (1, 'kept', 1);
select 1/0;
insert into {table} values (2, 'never', 2);
"""
    r = psql(gateway, "-q", input=script)
    assert r.returncode == 3  # ON_ERROR_STOP
    assert "ERROR:  division by zero" in r.stderr
    assert shop.query(f"select id from {table}") == [(1,)]


def test_error_sqlstate_with_verbose_errors(gateway: RunningGateway) -> None:
    r = psql(gateway, "-v", "VERBOSITY=verbose", "-c", "select * from no_such_table")
    assert r.returncode == 1
    assert 'ERROR:  42P01: relation "no_such_table" does not exist' in r.stderr


def test_copy_from_stdin_in_a_script(gateway: RunningGateway, table: str, shop: TargetDb) -> None:
    script = (
        f"copy {table} from stdin;\n1\tone\t1.10\n2\ttwo\t2.20\n3\t\\N\t3.30\n\\.\n"
        f"select count(*) from {table};\n"
    )
    r = psql(gateway, "-A", "-t", input=script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "3"
    assert shop.query(f"select id, name from {table} order by id") == [
        (1, "one"),
        (2, "two"),
        (3, None),
    ]


def test_backslash_copy_in_and_out(
    gateway: RunningGateway, table: str, shop: TargetDb, tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("".join(f"{i},item {i},{i}.25\n" for i in range(1, 501)))
    r = psql(gateway, "-c", f"\\copy {table} from '{source}' with (format csv)")
    assert r.returncode == 0, r.stderr
    assert "COPY 500" in r.stdout
    assert shop.query(f"select count(*), sum(id) from {table}") == [(500, 125250)]

    target = tmp_path / "out.csv"
    r = psql(
        gateway, "-c", f"\\copy (select * from {table} order by id) to '{target}' with (format csv)"
    )
    assert r.returncode == 0, r.stderr
    assert "COPY 500" in r.stdout
    assert target.read_text() == source.read_text()


def test_copy_to_stdout(gateway: RunningGateway, table: str, shop: TargetDb) -> None:
    shop.execute(f"insert into {table} select g, 'n' || g, g from generate_series(1, 3) g")
    r = psql(
        gateway,
        "-c",
        f"copy (select id, name from {table} order by id) to stdout with (format csv, header)",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "id,name\n1,n1\n2,n2\n3,n3\n"


def test_notice_from_a_do_block(gateway: RunningGateway) -> None:
    r = psql(gateway, "-c", "do $$ begin raise notice 'hello % from psql', 42; end $$")
    assert r.returncode == 0, r.stderr
    assert "NOTICE:  hello 42 from psql" in r.stderr
    assert "DO" in r.stdout


def test_psql_meta_commands(gateway: RunningGateway, table: str) -> None:
    """\\d and friends run catalog queries through the gateway."""
    r = psql(gateway, "-c", f"\\d {table}", "-c", "\\dt", "-c", "\\conninfo")
    assert r.returncode == 0, r.stderr
    assert "numeric(8,2)" in r.stdout
    assert table in r.stdout
    assert 'database "shop" as user "alice"' in r.stdout


def test_show_session_id(gateway: RunningGateway) -> None:
    r = psql(gateway, "-A", "-t", "-c", "show pgwarden.session_id")
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    assert len(sid) == 36 and sid.count("-") == 4


def test_ctrl_c_cancels_the_running_statement(gateway: RunningGateway, shop: TargetDb) -> None:
    """psql sends a CancelRequest (PQcancel) on SIGINT; the statement ends with 57014."""
    proc = subprocess.Popen(
        [pg_program("psql"), "-X", "-v", "VERBOSITY=verbose", "-d", gateway.dsn("alice"),
         "-c", "select pg_sleep(30)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client_env(),
    )  # fmt: skip
    try:
        wait_for_active(shop.cluster, "select pg_sleep(30)")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - started < 5
    assert proc.returncode == 1
    assert "57014" in stderr
    assert "canceling statement due to user request" in stderr
