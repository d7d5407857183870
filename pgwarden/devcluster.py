"""A throwaway PostgreSQL cluster for tests, `pgwarden demo` and the benchmark.

    with DevCluster(log_statement="all", ssl=True) as pg:
        pg.create_role("app", "secret", auth="scram-sha-256")
        pg.create_database("shop", owner="app")
        psycopg.connect(pg.dsn(dbname="shop", user="app"))

The cluster lives in a fresh temporary directory (data directory, Unix socket, log file and TLS
files) that `stop()` removes. PostgreSQL refuses to run as root, so when this process is root
the server programs run as the `postgres` system user (or `run_as=`). The server listens on
127.0.0.1 only, on a free port unless one is given.

Administration (psql, `execute`, `query`) goes through the Unix socket as the superuser, which
the first pg_hba.conf line trusts; TCP connections use the HBA lines added by `add_hba_line`
and `create_role`, then scram-sha-256 for everyone else.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DevCluster",
    "DevClusterError",
    "Role",
    "conninfo",
    "find_bindir",
    "quote_ident",
    "quote_literal",
    "running_clusters",
]

AuthMethod = Literal["scram-sha-256", "md5", "password", "trust", "reject"]

BINDIR_ENV_VAR = "PGWARDEN_PG_BINDIR"


class DevClusterError(RuntimeError):
    """Starting, stopping or talking to the throwaway cluster failed."""


@dataclass(frozen=True)
class Role:
    name: str
    password: str | None
    auth: AuthMethod


# --------------------------------------------------------------------------------------------
# Helpers


def quote_ident(name: str) -> str:
    """Quote an SQL identifier."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """Quote an SQL string literal (standard_conforming_strings is on)."""
    if "\x00" in value:
        raise ValueError("literal contains a NUL byte")
    return "'" + value.replace("'", "''") + "'"


def _conninfo_value(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(**params: str | int | None) -> str:
    """Build a libpq keyword/value connection string, skipping None values."""
    return " ".join(
        f"{key}={_conninfo_value(str(value))}" for key, value in params.items() if value is not None
    )


def _version_key(path: Path) -> tuple[int, ...]:
    parts = re.findall(r"\d+", path.parent.name)
    return tuple(int(p) for p in parts) or (0,)


def _has_server(bindir: Path) -> bool:
    return all((bindir / prog).is_file() for prog in ("postgres", "initdb", "pg_ctl"))


def find_bindir(explicit: str | Path | None = None) -> Path:
    """Locate the PostgreSQL server binaries.

    Order: `explicit`, $PGWARDEN_PG_BINDIR, `pg_config --bindir`, the newest
    /usr/lib/postgresql/*/bin (Debian), /usr/pgsql-*/bin (RHEL), then `initdb` on PATH.
    """
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
    elif os.environ.get(BINDIR_ENV_VAR):
        candidates.append(Path(os.environ[BINDIR_ENV_VAR]))
    else:
        pg_config = shutil.which("pg_config")
        if pg_config:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = subprocess.run(
                    [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False
                )
                if out.returncode == 0 and out.stdout.strip():
                    candidates.append(Path(out.stdout.strip()))
        for pattern_root, pattern in (("/usr/lib/postgresql", "*/bin"), ("/usr", "pgsql-*/bin")):
            root = Path(pattern_root)
            if root.is_dir():
                candidates.extend(sorted(root.glob(pattern), key=_version_key, reverse=True))
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if _has_server(candidate):
            return candidate
    if explicit is not None or os.environ.get(BINDIR_ENV_VAR):
        raise DevClusterError(
            f"no PostgreSQL server binaries (postgres, initdb) in {candidates[0]}"
        )
    raise DevClusterError(
        "PostgreSQL server binaries not found (looked at pg_config --bindir and "
        "/usr/lib/postgresql/*/bin); run `make setup` or install the postgresql package, "
        f"or set {BINDIR_ENV_VAR}"
    )


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether every directory from / down to `path` can be entered by uid/gid."""
    current = path.resolve()
    for directory in [current, *current.parents]:
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


def _md5_password(user: str, password: str) -> str:
    digest = hashlib.md5((password + user).encode(), usedforsecurity=False).hexdigest()
    return "md5" + digest


# --------------------------------------------------------------------------------------------
# TLS material


@dataclass(frozen=True)
class _TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _make_tls(directory: Path, hostnames: Sequence[str]) -> _TlsFiles:
    now = dt.datetime.now(dt.UTC)
    not_before = now - dt.timedelta(days=1)
    not_after = now + dt.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pgwarden devcluster test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    sans: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    directory.mkdir(mode=0o755, exist_ok=True)
    files = _TlsFiles(
        ca_cert=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(files.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            server_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    files.ca_cert.chmod(0o644)
    files.server_cert.chmod(0o644)
    return files


# --------------------------------------------------------------------------------------------
# The cluster

_RUNNING: weakref.WeakSet[DevCluster] = weakref.WeakSet()


def running_clusters() -> list[DevCluster]:
    """The DevClusters of this process that are running now (for test-failure reports)."""
    return list(_RUNNING)


class DevCluster:
    """A throwaway PostgreSQL server in a temporary directory.

    Parameters:
        port: TCP port; default a free one.
        host: listen address (loopback only is the point; default 127.0.0.1).
        bindir: directory with postgres/initdb/pg_ctl; default `find_bindir()`.
        base_dir: parent directory for the temporary directory (default the system temp dir).
        fsync: keep fsync/synchronous_commit/full_page_writes on (default off, for speed).
        log_statement: none | ddl | mod | all.
        ssl: turn on server TLS with a generated CA (see `ca_path`).
        settings: extra postgresql.conf settings.
        max_connections: server max_connections.
        superuser: name of the bootstrap superuser.
        run_as: OS user for the server programs; default `postgres` when root, else yourself.
        keep: do not delete the directory on stop (for post-mortems).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        bindir: str | Path | None = None,
        base_dir: str | Path | None = None,
        fsync: bool = False,
        log_statement: Literal["none", "ddl", "mod", "all"] = "none",
        ssl: bool = False,
        settings: Mapping[str, str | int | float | bool] | None = None,
        max_connections: int = 200,
        superuser: str = "postgres",
        run_as: str | None = None,
        keep: bool = False,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port: int = port or 0
        self.bindir = find_bindir(bindir)
        self._base_parent = Path(base_dir) if base_dir is not None else None
        self.fsync = fsync
        self.log_statement = log_statement
        self.ssl = ssl
        self.settings: dict[str, str | int | float | bool] = dict(settings or {})
        self.max_connections = max_connections
        self.superuser = superuser
        self.superuser_password = secrets.token_urlsafe(18)
        self.keep = keep

        if run_as is None and os.geteuid() == 0:
            run_as = "postgres"
        self._run_as: pwd.struct_passwd | None = None
        if run_as is not None and run_as != pwd.getpwuid(os.geteuid()).pw_name:
            try:
                self._run_as = pwd.getpwnam(run_as)
            except KeyError:
                raise DevClusterError(
                    f"PostgreSQL cannot run as root and there is no {run_as!r} system user; "
                    "install the postgresql package (it creates the user) or run as a normal user"
                ) from None
            if self._run_as.pw_uid == 0:
                raise DevClusterError("PostgreSQL refuses to run as root; pick another run_as user")

        self._base: Path | None = None
        self._initialized = False
        self._running = False
        self._tls: _TlsFiles | None = None
        self._hba_custom: list[str] = []
        self._roles: dict[str, Role] = {}
        self._version: tuple[int, ...] | None = None

    # ---- paths and properties ------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        if self._base is None:
            raise DevClusterError("the cluster has not been created yet; call start()")
        return self._base

    @property
    def datadir(self) -> Path:
        return self.base_dir / "data"

    @property
    def sockdir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def logfile(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def ca_path(self) -> Path | None:
        """The CA certificate that signed the server certificate (ssl=True), for verify-full."""
        return self._tls.ca_cert if self._tls else None

    @property
    def server_cert_path(self) -> Path | None:
        return self._tls.server_cert if self._tls else None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def run_as_user(self) -> str:
        if self._run_as is not None:
            return self._run_as.pw_name
        return pwd.getpwuid(os.geteuid()).pw_name

    @property
    def version(self) -> tuple[int, ...]:
        """The server version, e.g. (15, 18)."""
        if self._version is None:
            out = subprocess.run(
                [str(self.bindir / "postgres"), "--version"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            match = re.search(r"(\d+)(?:\.(\d+))?", out)
            if not match:
                raise DevClusterError(f"cannot parse the PostgreSQL version from {out!r}")
            self._version = tuple(int(g) for g in match.groups() if g is not None)
        return self._version

    @property
    def roles(self) -> Mapping[str, Role]:
        return dict(self._roles)

    # ---- running programs ------------------------------------------------------------------

    def _server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        env.pop("LANGUAGE", None)
        if self._run_as is not None:
            env["HOME"] = self._run_as.pw_dir
            env["USER"] = env["LOGNAME"] = self._run_as.pw_name
        return env

    def _run_server_program(
        self, args: Sequence[str], *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        try:
            result = subprocess.run(
                list(args),
                cwd=self.base_dir,
                env=self._server_env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                start_new_session=True,
                **kwargs,
            )
        except subprocess.TimeoutExpired as exc:
            raise DevClusterError(f"{Path(args[0]).name} timed out after {timeout}s") from exc
        if check and result.returncode != 0:
            raise DevClusterError(
                f"{Path(args[0]).name} failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _make_base(self) -> Path:
        parent = self._base_parent or Path(tempfile.gettempdir())
        if self._run_as is not None and not _traversable_by(
            parent, self._run_as.pw_uid, self._run_as.pw_gid
        ):
            if self._base_parent is not None:
                raise DevClusterError(
                    f"{parent} is not reachable by the {self._run_as.pw_name!r} user"
                )
            parent = Path("/tmp")  # noqa: S108 - world-traversable fallback
        base = Path(tempfile.mkdtemp(prefix="pgwarden-pg-", dir=parent))
        base.chmod(0o755)  # the log file must be readable by the test process
        self._chown(base)
        return base

    # ---- life cycle ------------------------------------------------------------------------

    def init(self) -> None:
        """Create the directory and run initdb (start() does this when needed)."""
        if self._initialized:
            return
        self._base = self._make_base()
        sock = self.sockdir
        sock.mkdir(mode=0o755)
        self._chown(sock)
        pwfile = self.base_dir / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.superuser_password + "\n")
        self._chown(pwfile)
        args = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.superuser,
            f"--pwfile={pwfile}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        if self.version[0] >= 14:
            args.append("--no-instructions")
        try:
            self._run_server_program(args)
        finally:
            pwfile.unlink(missing_ok=True)
        if self.ssl:
            self._tls = _make_tls(self.base_dir / "tls", self._tls_hostnames())
            self._chown(self._tls.server_key)
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write("\ninclude 'pgwarden_devcluster.conf'\n")
        self._write_hba()
        self._initialized = True

    def _tls_hostnames(self) -> list[str]:
        names = ["localhost", "127.0.0.1", "::1"]
        if self.host not in names:
            names.insert(0, self.host)
        return names

    def _conf_settings(self) -> dict[str, str | int | float | bool]:
        conf: dict[str, str | int | float | bool] = {
            "listen_addresses": self.host,
            "port": self.port,
            "unix_socket_directories": str(self.sockdir),
            "unix_socket_permissions": "0777",
            "max_connections": self.max_connections,
            "password_encryption": "scram-sha-256",
            "log_statement": self.log_statement,
            "log_line_prefix": "%m [%p] %q%u@%d ",
            "logging_collector": False,
            "timezone": "UTC",
            "log_timezone": "UTC",
            "lc_messages": "C",
        }
        if not self.fsync:
            conf.update(fsync=False, synchronous_commit=False, full_page_writes=False)
        if self._tls is not None:
            conf.update(
                ssl=True,
                ssl_cert_file=str(self._tls.server_cert),
                ssl_key_file=str(self._tls.server_key),
            )
        conf.update(self.settings)
        return conf

    def _write_conf(self) -> None:
        lines = ["# written by pgwarden.devcluster; changes are overwritten on start"]
        for name, value in self._conf_settings().items():
            if isinstance(value, bool):
                rendered = "on" if value else "off"
            elif isinstance(value, int | float):
                rendered = str(value)
            else:
                rendered = quote_literal(value)
            lines.append(f"{name} = {rendered}")
        path = self.datadir / "pgwarden_devcluster.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self._chown(path)

    def _hba_text(self) -> str:
        lines = [
            "# written by pgwarden.devcluster",
            f"local all {self._hba_user(self.superuser)} trust",
            "# lines added with add_hba_line()/create_role()",
            *self._hba_custom,
            "# defaults",
            "local all all trust",
            "host all all 127.0.0.1/32 scram-sha-256",
            "host all all ::1/128 scram-sha-256",
        ]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _hba_user(name: str) -> str:
        if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in {"all"}:
            return name
        return '"' + name.replace('"', '""') + '"'

    def _write_hba(self) -> None:
        path = self.datadir / "pg_hba.conf"
        path.write_text(self._hba_text(), encoding="utf-8")
        self._chown(path)

    def start(self) -> Self:
        """initdb (first time) and start the server; returns self."""
        if self._running:
            return self
        self.init()
        attempts = 1 if self._requested_port else 5
        for attempt in range(attempts):
            if not self._requested_port:
                self.port = _free_port(self.host)
            self._write_conf()
            log_pos = self.log_position()
            result = self._run_server_program(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-l",
                    str(self.logfile),
                    "-w",
                    "-t",
                    "60",
                    "-s",
                    "start",
                ],
                check=False,
            )
            if result.returncode == 0:
                self._running = True
                _RUNNING.add(self)
                atexit.register(self._atexit)
                return self
            log = self.log_text(since=log_pos)
            if "already in use" in log and attempt + 1 < attempts:
                continue
            raise DevClusterError(
                f"PostgreSQL failed to start (pg_ctl exit {result.returncode}): "
                f"{result.stderr.strip()}\n--- server log ---\n{log[-4000:]}"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, *, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Stop the server and (unless keep=True) delete its directory. Idempotent."""
        with contextlib.suppress(Exception):
            atexit.unregister(self._atexit)
        if self._running:
            self._pg_ctl_stop(mode)
            self._running = False
        _RUNNING.discard(self)
        if self._base is not None and not self.keep:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
            self._initialized = False
            self._tls = None

    def _pg_ctl_stop(self, mode: str) -> None:
        base = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60", "-s"]
        result = self._run_server_program([*base, "-m", mode, "stop"], check=False)
        if result.returncode != 0 and self._pid() is not None:
            self._run_server_program([*base, "-m", "immediate", "stop"], check=False)

    def _pid(self) -> int | None:
        try:
            first = (self.datadir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def restart(self) -> None:
        """Stop and start again, keeping the data (and the port)."""
        if self._running:
            self._pg_ctl_stop("fast")
            self._running = False
        requested = self._requested_port
        if self.port:
            self._requested_port = self.port
        try:
            self.start()
        finally:
            self._requested_port = requested

    def _atexit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(mode="immediate")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<DevCluster {self.host}:{self.port} {state} {self._base}>"

    # ---- configuration ---------------------------------------------------------------------

    def reload(self, *, timeout: float = 10.0) -> None:
        """Reload postgresql.conf and pg_hba.conf, waiting until the server has done so."""
        if not self._running:
            return
        position = self.log_position()
        self._run_server_program(
            [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-s", "reload"]
        )
        self.wait_for_log(
            "received SIGHUP, reloading configuration files", since=position, timeout=timeout
        )

    @property
    def hba_lines(self) -> list[str]:
        """Lines added with add_hba_line() / create_role(), in order."""
        return list(self._hba_custom)

    def add_hba_line(self, line: str, *, first: bool = False, reload: bool = True) -> None:
        """Add a pg_hba.conf line, e.g. `host all bob 127.0.0.1/32 md5`.

        Added lines come after the superuser's Unix-socket line and before the defaults
        (`host all all ... scram-sha-256`); `first=True` puts it before other added lines.
        """
        line = line.strip()
        if not line or "\n" in line:
            raise ValueError("expected exactly one pg_hba.conf line")
        if first:
            self._hba_custom.insert(0, line)
        else:
            self._hba_custom.append(line)
        if self._initialized:
            self._write_hba()
            if self._running:
                errors = self._hba_errors()
                if errors:
                    self._hba_custom.remove(line)
                    self._write_hba()
                    raise DevClusterError(f"invalid pg_hba.conf line {line!r}: {errors}")
                if reload:
                    self.reload()

    def _hba_errors(self) -> str:
        return self.execute(
            "SELECT error FROM pg_hba_file_rules WHERE error IS NOT NULL LIMIT 1"
        ).strip()

    def set_setting(
        self, name: str, value: str | int | float | bool, *, reload: bool = True
    ) -> None:
        """Change a postgresql.conf setting (applied by reload; some need restart())."""
        self.settings[name] = value
        if self._initialized:
            self._write_conf()
            if reload and self._running:
                self.reload()

    # ---- logs ------------------------------------------------------------------------------

    def log_position(self) -> int:
        """The current size of the server log, to pass to log_text(since=...)."""
        if self._base is None:
            return 0
        try:
            return self.logfile.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        """The server log (from byte offset `since`)."""
        if self._base is None:
            return ""
        try:
            with self.logfile.open("rb") as fh:
                fh.seek(since)
                return fh.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, *, since: int = 0, timeout: float = 10.0) -> str:
        """Wait until `pattern` (a regular expression) appears in the log after `since`;
        return the matching line."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text(since)
            for line in text.splitlines():
                if regex.search(line):
                    return line
            if time.monotonic() > deadline:
                raise DevClusterError(f"{pattern!r} did not appear in the server log in {timeout}s")
            time.sleep(0.01)

    # ---- connecting --------------------------------------------------------------------------

    def _password_for(self, user: str) -> str | None:
        if user == self.superuser:
            return self.superuser_password
        role = self._roles.get(user)
        return role.password if role else None

    def dsn(
        self,
        dbname: str = "postgres",
        user: str | None = None,
        *,
        password: str | None = None,
        sslmode: str | None = None,
        **params: str | int | None,
    ) -> str:
        """A libpq connection string over TCP (password filled in for known roles)."""
        user = user or self.superuser
        if password is None:
            password = self._password_for(user)
        return conninfo(
            host=self.host,
            port=self.port,
            dbname=dbname,
            user=user,
            password=password,
            sslmode=sslmode,
            **params,
        )

    def url(
        self, dbname: str = "postgres", user: str | None = None, *, password: str | None = None
    ) -> str:
        """A postgresql:// URL over TCP (for asyncpg and friends)."""
        user = user or self.superuser
        if password is None:
            password = self._password_for(user)
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{host}:{self.port}/{quote(dbname, safe='')}"

    def connect_kwargs(self, dbname: str = "postgres", user: str | None = None) -> dict[str, Any]:
        """host/port/user/password/dbname keyword arguments (psycopg and asyncpg style)."""
        user = user or self.superuser
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": user,
            "dbname": dbname,
        }
        password = self._password_for(user)
        if password is not None:
            kwargs["password"] = password
        return kwargs

    def admin_dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        """A connection string over the Unix socket (trusted), as the superuser by default."""
        return conninfo(
            host=str(self.sockdir), port=self.port, dbname=dbname, user=user or self.superuser
        )

    # ---- running SQL -----------------------------------------------------------------------

    def psql(
        self,
        *args: str,
        dbname: str = "postgres",
        user: str | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run psql over the Unix socket (no psqlrc, ON_ERROR_STOP) with extra `args`."""
        if not self._running:
            raise DevClusterError("the cluster is not running")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGCONNECT_TIMEOUT="10", PGAPPNAME="pgwarden-devcluster")
        cmd = [
            str(self.bindir / "psql"),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            self.admin_dsn(dbname, user),
            *args,
        ]
        try:
            result = subprocess.run(
                cmd,
                input=input,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DevClusterError(f"psql timed out after {timeout}s") from exc
        if check and result.returncode != 0:
            raise DevClusterError(
                f"psql failed (exit {result.returncode}): {result.stderr.strip()}"
            )
        return result

    def execute(
        self,
        sql: str,
        *,
        dbname: str = "postgres",
        user: str | None = None,
        single_transaction: bool = False,
    ) -> str:
        """Run an SQL script with psql; return its unaligned, tuples-only output."""
        args = ["-q", "-A", "-t"]
        if single_transaction:
            args.append("-1")
        return self.psql(*args, dbname=dbname, user=user, input=sql).stdout

    def query(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any] | None = None,
        *,
        dbname: str = "postgres",
        user: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement with psycopg (a test dependency) and return its rows."""
        try:
            import psycopg  # noqa: PLC0415 - optional (test) dependency
        except ImportError as exc:  # pragma: no cover - psycopg is a dev dependency
            raise DevClusterError("DevCluster.query() needs psycopg; use execute()") from exc
        with psycopg.connect(self.admin_dsn(dbname, user), autocommit=True) as conn:
            cur = conn.execute(sql.encode(), params)  # type: ignore[call-overload]
            if cur.description is None:
                return []
            return list(cur.fetchall())

    # ---- roles and databases ---------------------------------------------------------------

    def create_role(
        self,
        name: str,
        password: str | None = None,
        *,
        auth: AuthMethod = "scram-sha-256",
        superuser: bool = False,
        login: bool = True,
        createdb: bool = False,
        hba: bool = True,
    ) -> Role:
        """Create (or update) a role and add HBA lines so that TCP logins use `auth`.

        The password is stored as SCRAM, except for md5, where it is stored as an MD5 hash (so
        that the server really runs the md5 exchange). Returns the Role.
        """
        if auth in {"scram-sha-256", "md5", "password"} and password is None:
            raise ValueError(f"auth={auth!r} needs a password")
        options = [
            "SUPERUSER" if superuser else "NOSUPERUSER",
            "LOGIN" if login else "NOLOGIN",
            "CREATEDB" if createdb else "NOCREATEDB",
        ]
        if password is None:
            options.append("PASSWORD NULL")
        elif auth == "md5":
            options.append(f"PASSWORD {quote_literal(_md5_password(name, password))}")
        else:
            options.append(f"PASSWORD {quote_literal(password)}")
        ident = quote_ident(name)
        exists = self.execute(
            f"SELECT 1 FROM pg_roles WHERE rolname = {quote_literal(name)}"  # noqa: S608
        )
        verb = "ALTER" if exists.strip() == "1" else "CREATE"
        self.execute(
            "SET password_encryption = 'scram-sha-256';\n"
            f"{verb} ROLE {ident} {' '.join(options)};\n"
        )
        role = Role(name=name, password=password, auth=auth)
        self._roles[name] = role
        if hba:
            user = self._hba_user(name)
            for line in (
                f"host all {user} 127.0.0.1/32 {auth}",
                f"host all {user} ::1/128 {auth}",
            ):
                if line not in self._hba_custom:
                    # Role lines go first so that they beat broader lines added earlier.
                    self._hba_custom.insert(0, line)
            if self._initialized:
                self._write_hba()
                self.reload()
        return role

    def create_database(
        self, name: str, *, owner: str | None = None, replace: bool = False
    ) -> None:
        """CREATE DATABASE (dropping an existing one first when replace=True)."""
        if replace:
            self.drop_database(name)
        sql = f"CREATE DATABASE {quote_ident(name)}"
        if owner is not None:
            sql += f" OWNER {quote_ident(owner)}"
        self.execute(sql + ";\n")

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS, disconnecting its sessions."""
        force = " WITH (FORCE)" if self.version[0] >= 13 else ""
        self.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)}{force};\n")

    def databases(self) -> list[str]:
        return [
            line
            for line in self.execute("SELECT datname FROM pg_database ORDER BY 1").splitlines()
            if line
        ]

    def connections(self) -> Iterator[tuple[str, str]]:
        """(user, database) of the client backends currently connected."""
        out = self.execute(
            "SELECT usename || '|' || datname FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        for line in out.splitlines():
            if line:
                user, _, db = line.partition("|")
                yield user, db
