"""Differential tests: the same script run directly against PostgreSQL and through the
gateway must give the same results (rows, command tags, SQLSTATEs, notices, message order).

1. psql -X -A output (stdout and stderr) for a script of varied statements, errors included.
2. Raw protocol message scripts: the normalised reply messages, one by one.

Syntax errors are the one designed difference: the gateway refuses SQL it cannot parse
itself (CONTRACT.md: 42601, never forwarded), so its message differs; they are compared
separately, by SQLSTATE and message flow.

Masking is off here: it changes values by design (tests/e2e/masking covers it), and with it
on a binary COPY of a temporary table is refused (its columns cannot be described).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest

from tests.support import wire
from tests.support.databases import TargetDb, run_psql
from tests.support.fixtures import default_targets
from tests.support.gateway import RunningGateway, gateway_config


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    shop: TargetDb,
    shop_md5: TargetDb,
    shop_trust: TargetDb,
) -> Iterator[RunningGateway]:
    data_dir = tmp_path_factory.mktemp("gateway-differential")
    targets = default_targets(shop, shop_md5, shop_trust)
    with RunningGateway(gateway_config(data_dir, targets=targets, masking="off")) as gw:
        yield gw


# ---------------------------------------------------------------------------------------------
# psql

PSQL_SCRIPT = r"""
\echo == basics
select 1 as one, 'two' as two, 3.0::numeric as three, null as nothing;
select current_user, current_database(), session_user;
select g, g * g as square from generate_series(1, 5) g order by g desc;
select 1 \; select 2 as second \; select 'three' as third;
\echo == types
select array[1, 2, 3] as arr, '{"a": {"b": [1, 2]}}'::jsonb as doc, '\xdeadbeef'::bytea as bin;
select 'naïve café' as utf8, E'tab\there' as escaped, length('日本語') as len;
select '2024-02-29 12:34:56+00'::timestamptz at time zone 'UTC' as ts,
       interval '1 day 2 hours' as iv;
select 1e300::float8 * 1e10 as overflow;
\echo == table
create table {t} (id int primary key, name text not null, qty int default 0 check (qty >= 0));
insert into {t} (id, name) values (1, 'apple'), (2, 'pear'), (3, 'plum') returning id, name;
update {t} set qty = id * 10 where id >= 2;
delete from {t} where id = 1 returning *;
select * from {t} order by id;
select name, qty, sum(qty) over (order by id) as running from {t} order by id;
with moved as (update {t} set qty = qty + 1 returning id) select count(*) from moved;
\echo == errors
select 1/0;
select * from no_such_table;
insert into {t} (id, name) values (2, 'duplicate');
insert into {t} (id, name, qty) values (9, 'negative', -1);
insert into {t} (id) values (10);
select 'after errors' as still;
\echo == transactions
begin;
insert into {t} (id, name) values (20, 'in tx');
select nope;
select 'in failed tx';
rollback;
begin;
insert into {t} (id, name) values (21, 'kept');
savepoint s1;
insert into {t} (id, name) values (21, 'dup in savepoint');
rollback to savepoint s1;
commit;
select id, name from {t} where id >= 20 order by id;
\echo == notices
do $$ begin raise notice 'notice with % and %', 'values', 42; end $$;
do $$ begin raise warning 'a warning' using detail = 'some detail', hint = 'a hint'; end $$;
drop table if exists no_such_table_either;
do $$ begin raise exception 'custom failure' using errcode = 'P0042'; end $$;
\echo == copy
copy {t} (id, name, qty) from stdin;
30	copied one	1
31	copied two	2
\.
copy {t} (id, name) from stdin;
32	ok
not-a-number	bad
\.
copy (select id, name, qty from {t} order by id) to stdout with (format csv, header);
\echo == prepared and cursors
prepare q(int) as select name from {t} where id = $1;
execute q(30);
execute q(12345);
deallocate q;
begin;
declare c cursor for select id from {t} order by id;
fetch 2 from c;
fetch all from c;
close c;
commit;
\echo == settings
set datestyle = 'German';
show datestyle;
select '2024-02-29'::date;
reset datestyle;
set application_name = 'diff-app';
show application_name;
\echo == functions
create function {t}_add(a int, b int) returns int language sql immutable as 'select a + b';
select {t}_add(40, 2);
drop function {t}_add(int, int);
\x on
select 1 as a, 'expanded' as b;
\x off
select count(*) as big from (select g from generate_series(1, 5000) g) s;
select string_agg(g::text, ',') from generate_series(1, 200) g;
drop table {t};
\echo == end
"""


def _normalise(text: str) -> str:
    return re.sub(r"PID \d+", "PID N", text)


def test_psql_script_same_directly_and_through_the_gateway(
    gateway: RunningGateway, shop: TargetDb, unique: Callable[[str], str]
) -> None:
    t = unique("diff")
    script = PSQL_SCRIPT.replace("{t}", t)
    args = ("-A", "-v", "ON_ERROR_STOP=0", "-v", "VERBOSITY=verbose", "-v", "SHOW_CONTEXT=always")
    direct = run_psql(shop.dsn(application_name="psql"), *args, input=script)
    through = run_psql(gateway.dsn("alice", application_name="psql"), *args, input=script)
    assert direct.returncode == through.returncode == 0
    # The direct run really exercised everything.
    assert "== end" in direct.stdout
    assert "ERROR:  22012: division by zero" in direct.stderr
    assert "ERROR:  23505" in direct.stderr
    assert "ERROR:  P0042: custom failure" in direct.stderr
    assert "NOTICE:  00000: notice with values and 42" in direct.stderr
    assert "COPY 2" in direct.stdout
    assert direct.stderr.count("ERROR:") == 11
    assert _normalise(through.stdout) == _normalise(direct.stdout)
    assert _normalise(through.stderr) == _normalise(direct.stderr)


# ---------------------------------------------------------------------------------------------
# Raw protocol


@dataclass(frozen=True)
class Step:
    """Bytes to send, then read until `ready` ReadyForQuery messages (or one `until` type)."""

    send: bytes
    ready: int = 1
    until: bytes | None = None


def _norm(msg: wire.Msg) -> tuple[object, ...]:
    if msg.type in (b"E", b"N"):
        f = msg.fields
        return (msg.name, f.get("V"), f.get("C"), f.get("M"), f.get("D"), f.get("H"), f.get("P"))
    if msg.type == b"A":
        _pid, channel, payload = msg.notification
        return (msg.name, channel, payload)
    if msg.type == b"D":
        return (msg.name, msg.values)
    if msg.type == b"T":
        return (msg.name, msg.body)
    return (msg.name, msg.body)


def _play(conn: wire.RawConn, steps: Sequence[Step]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for step in steps:
        conn.send(step.send)
        if step.until is not None:
            got = conn.recv_until([step.until])
        else:
            got = []
            for _ in range(step.ready):
                got += conn.until_ready()
        for m in got:
            norm = _norm(m)
            # COPY data may be split into CopyData messages anywhere (the gateway joins
            # consecutive ones): compare the data, not the split
            if norm[0] == "CopyData" and out and out[-1][0] == "CopyData":
                out[-1] = ("CopyData", bytes(out[-1][1]) + bytes(norm[1]))  # type: ignore[arg-type]
            else:
                out.append(norm)
        out.append(("--",))
    return out


E = wire.extended
SCRIPTS: dict[str, list[Step]] = {
    "simple-multi-statement-with-error": [
        Step(wire.query("select 1 as a; select 1/0; select 2 as b")),
        Step(wire.query("select 'after'")),
    ],
    "simple-empty-and-comments": [
        Step(wire.query("")),
        Step(wire.query("-- only a comment")),
        Step(wire.query("select 1; ; select 2")),
    ],
    "extended-pipeline-error-skips-to-sync": [
        Step(wire.query("create temp table t (id int primary key)")),
        Step(
            E("insert into t values (1)")
            + E("insert into t values (2)")
            + E("insert into t values (1)")
            + E("insert into t values (3)")
            + wire.sync()
            + E("select count(*) from t")
            + wire.sync(),
            ready=2,
        ),
    ],
    "extended-parse-bind-errors": [
        Step(wire.parse("s1", "select $1::int") + wire.bind("", "s1", ["1", "2"]) + wire.sync()),
        Step(wire.parse("s2", "select $1::int") + wire.bind("", "s2", ["x"]) + wire.sync()),
        Step(wire.bind("", "nosuchstatement") + wire.sync()),
        Step(wire.parse("s1", "select 2") + wire.sync()),  # already exists
        Step(wire.describe(b"S", "nosuch") + wire.sync()),
    ],
    "extended-named-statements-describe-close": [
        Step(
            wire.parse("st", "select $1::text || $2::text as cat, $1::text is null as isnull")
            + wire.describe(b"S", "st")
            + wire.bind("p1", "st", ["a", "b"])
            + wire.describe(b"P", "p1")
            + wire.execute("p1")
            + wire.bind("p2", "st", [None, "z"], result_formats=[1])
            + wire.execute("p2")
            + wire.close(b"P", "p1")
            + wire.close(b"S", "st")
            + wire.close(b"S", "never-existed")
            + wire.sync()
        ),
        Step(wire.bind("", "st") + wire.sync()),
    ],
    "portal-suspended": [
        Step(
            wire.parse("", "select g, repeat('x', g) from generate_series(1, 7) g")
            + wire.bind("cur")
            + wire.execute("cur", 3)
            + wire.execute("cur", 3)
            + wire.execute("cur", 3)
            + wire.execute("cur", 3)
            + wire.sync()
        ),
    ],
    "transactions": [
        Step(wire.query("begin")),
        Step(E("select 1") + wire.sync()),
        Step(wire.query("select nosuchcolumn")),
        Step(E("select 1") + wire.sync()),
        Step(wire.query("rollback")),
        Step(E("begin") + E("select 1/0") + wire.sync()),
        Step(wire.query("commit")),
        Step(wire.query("begin; select 1; commit; select 2")),
    ],
    "copy-simple": [
        Step(wire.query("create temp table c (id int, name text)")),
        Step(wire.query("copy c from stdin"), until=b"G"),
        Step(wire.copy_data(b"1\tone\n") + wire.copy_data(b"2\ttwo\n") + wire.copy_done()),
        Step(wire.query("copy c from stdin"), until=b"G"),
        Step(wire.copy_data(b"3\tthree\n") + wire.copy_fail("stop")),
        Step(wire.query("copy c from stdin"), until=b"G"),
        Step(wire.copy_data(b"bad\trow\n") + wire.copy_done()),
        Step(wire.query("copy (select * from c order by id) to stdout with (format csv)")),
        Step(wire.query("copy c to stdout with (format binary)")),
    ],
    "copy-extended": [
        Step(wire.query("create temp table c (id int)")),
        Step(E("copy c from stdin") + wire.flush(), until=b"G"),
        Step(wire.copy_data(b"1\n2\n") + wire.copy_done() + wire.sync()),
        Step(E("copy c to stdout") + wire.sync()),
    ],
    "notices-and-parameter-status": [
        Step(wire.query("do $$ begin raise notice 'n1 %', 1; raise warning 'w2'; end $$")),
        Step(
            wire.query(
                "set client_min_messages = warning; do $$ begin raise notice 'hidden'; end $$"
            )
        ),
        Step(wire.query("set application_name = 'raw-diff'; set timezone = 'Europe/Paris'")),
        Step(E("set datestyle = 'SQL, DMY'") + wire.sync()),
        Step(wire.query("drop table if exists no_such_thing")),
    ],
    "listen-notify-self": [
        Step(wire.query("listen chan")),
        Step(wire.query("notify chan, 'payload'; select 1")),
        Step(E("select pg_notify('chan', 'from extended')") + wire.sync()),
        Step(wire.query("unlisten *")),
    ],
    "extended-empty-statement": [
        Step(wire.parse("", "") + wire.bind() + wire.describe(b"P") + wire.execute() + wire.sync()),
        Step(
            wire.parse("empty", "  ")
            + wire.describe(b"S", "empty")
            + wire.bind("", "empty")
            + wire.execute()
            + wire.sync()
        ),
        Step(wire.bind("", "empty") + wire.execute() + wire.sync()),
    ],
    "flush-and-bare-sync": [
        Step(E("select 'flushed'") + wire.flush(), until=b"C"),
        Step(wire.sync()),
        Step(wire.sync()),
        Step(wire.sync() + wire.sync(), ready=2),
    ],
}


KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[n]))
        if n in KNOWN_BUGS
        else n
        for n in sorted(SCRIPTS)
    ],
)
def test_message_script_same_directly_and_through_the_gateway(
    gateway: RunningGateway, shop: TargetDb, name: str
) -> None:
    steps = SCRIPTS[name]
    with wire.RawConn.connect(shop.cluster.host, shop.cluster.port) as direct:
        direct.login(shop.user, shop.dbname, shop.password)
        expected = _play(direct, steps)
    with wire.RawConn.connect(gateway.host, gateway.port) as through:
        through.login("alice", "shop", gateway.token("alice"))
        got = _play(through, steps)
    assert len(expected) > len(steps)
    assert got == expected


@pytest.mark.parametrize(
    "steps",
    [
        [Step(wire.query("selec 1"))],
        [Step(wire.query("select 1; selec 2; select 3"))],
        [Step(wire.parse("", "selec 1") + wire.bind() + wire.execute() + wire.sync())],
        [Step(E("select 1") + E("selec 2") + E("select 3") + wire.sync())],
        [Step(wire.query("begin")), Step(wire.query("selec 1")), Step(wire.query("select 1")),
         Step(wire.query("rollback"))],
        # An Execute the gateway cannot tie to a statement it classified is refused by the
        # gateway (42601) rather than by the server (34000): the flow is the same.
        [Step(wire.execute("nosuchportal") + wire.sync()), Step(wire.query("select 1"))],
    ],
    ids=["simple", "simple-multi", "extended", "extended-pipeline", "in-transaction",
         "unknown-portal"],
)  # fmt: skip
def test_syntax_errors_same_sqlstate_and_flow(
    gateway: RunningGateway, shop: TargetDb, steps: list[Step]
) -> None:
    def flow(replies: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        # Message kinds and SQLSTATEs; the wording of a syntax error is the gateway's own.
        out = [r[:3] if r[0] in ("ErrorResponse", "NoticeResponse") else r for r in replies]
        return [
            ("ErrorResponse", "ERROR", "42601") if r == ("ErrorResponse", "ERROR", "34000") else r
            for r in out
        ]

    with wire.RawConn.connect(shop.cluster.host, shop.cluster.port) as direct:
        direct.login(shop.user, shop.dbname, shop.password)
        expected = _play(direct, steps)
    with wire.RawConn.connect(gateway.host, gateway.port) as through:
        through.login("alice", "shop", gateway.token("alice"))
        got = _play(through, steps)
    assert ("ErrorResponse", "ERROR", "42601") in flow(expected)
    assert flow(got) == flow(expected)
