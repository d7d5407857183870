"""The masking tests' environment: a demo-shop database behind a gateway with the default
masking (card numbers, SSNs, e-mails), recording on and a policy that blocks nothing (audit
mode), so every way of getting a value out can be tried; and a TCP tap between client and
gateway that keeps every byte the client receives, so "nothing raw reached the client" is
checked on the wire, not on what a client library chose to show."""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from pgwarden.demo import load_shop
from pgwarden.devcluster import DevCluster
from tests.support.databases import TargetDb
from tests.support.gateway import RunningGateway, gateway_config

DBNAME = "mask_shop"
OWNER = "mask_owner"
TARGET = "shop"
SUBJECT = "agent-mask"

# A policy that blocks nothing (audit mode) so the masking is what is under test.
AUDIT_POLICY: dict[str, Any] = {"mode": "audit", "default": "allow", "rules": []}

# Objects a user could hide values behind (created as the table owner).
SETUP_SQL = """
CREATE VIEW customer_contacts AS
    SELECT id, name, email AS contact, ssn AS tax_id, card_number AS pan FROM customers;
CREATE MATERIALIZED VIEW customer_cards AS SELECT id, card_number, ssn FROM customers;
CREATE TABLE card_numbers AS
    SELECT id, regexp_replace(card_number, '[^0-9]', '', 'g')::bigint AS pan,
           regexp_replace(card_number, '[^0-9]', '', 'g')::numeric AS pan_numeric
    FROM customers;
CREATE FUNCTION customer_email(i int) RETURNS text LANGUAGE sql STABLE
    AS 'SELECT email FROM customers WHERE id = i';
"""


@dataclass(frozen=True)
class Secrets:
    """The sample customers' sensitive values and the forms they must not appear in."""

    emails: tuple[str, ...]
    ssns: tuple[str, ...]
    cards: tuple[str, ...]

    def needles(self) -> list[tuple[str, str]]:
        """(kind, text) pairs, lower case: every raw value, and cards and SSNs also with the
        separators removed."""
        out: list[tuple[str, str]] = []
        out += [("email", e.lower()) for e in self.emails]
        for s in self.ssns:
            out += [("ssn", s), ("ssn-digits", s.replace("-", ""))]
        for c in self.cards:
            out += [("card", c), ("card-digits", re.sub(r"\D", "", c))]
        return out

    def binary_needles(self) -> list[tuple[str, bytes]]:
        """Card numbers as binary int8 (how a bigint column travels in binary format)."""
        return [("card-int8", struct.pack("!q", int(re.sub(r"\D", "", c)))) for c in self.cards]

    def leaks(self, data: bytes | str) -> list[str]:
        """What raw values ``data`` holds. Text from binary data should be decoded with
        ``surrogateescape`` so the binary forms can be found too."""
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
        low = raw.decode("utf-8", "replace").lower()
        found = {f"{kind}:{needle}" for kind, needle in self.needles() if needle in low}
        found |= {
            f"{kind}:{needle.hex()}" for kind, needle in self.binary_needles() if needle in raw
        }
        return sorted(found)


class Tap:
    """A loopback TCP relay that keeps everything the server side sends to the client."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, keep: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if keep:
                    with self._lock:
                        self.received.append(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def take(self) -> bytes:
        """Everything received since the last call."""
        with self._lock:
            data, self.received = b"".join(self.received), []
        return data

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass
class MaskEnv:
    cluster: DevCluster
    data_dir: Path
    password: str = field(default_factory=lambda: f"mk-{secrets.token_hex(12)}")

    def __post_init__(self) -> None:
        load_shop(self.cluster, dbname=DBNAME, owner=OWNER, password=self.password)
        self.cluster.execute(SETUP_SQL, dbname=DBNAME, user=OWNER)
        self.db = TargetDb(self.cluster, DBNAME, OWNER, self.password, "scram-sha-256")
        self.gw = RunningGateway(
            gateway_config(self.data_dir, targets={TARGET: self.db.target()}, policy=AUDIT_POLICY)
        ).start()
        self.tap = Tap(self.gw.host, self.gw.port)
        self.secrets = self._secrets()

    def _secrets(self) -> Secrets:
        with psycopg.connect(self.cluster.admin_dsn(DBNAME)) as conn:
            rows = conn.execute("SELECT email, ssn, card_number FROM customers").fetchall()
        return Secrets(
            tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows)
        )

    def close(self) -> None:
        self.tap.close()
        with contextlib.suppress(Exception):
            self.gw.stop()

    # ---- addresses ---------------------------------------------------------------------------

    def token(self) -> str:
        return self.gw.token(SUBJECT, (), ttl=3600)

    def dsn(self, **extra: Any) -> str:
        """Through the tap (plaintext on loopback, so the tap sees the messages)."""
        return (
            f"host=127.0.0.1 port={self.tap.port} dbname={TARGET} user={SUBJECT} "
            f"password={self.token()} sslmode=disable connect_timeout=10"
            + "".join(f" {k}={v}" for k, v in extra.items())
        )

    def direct_dsn(self) -> str:
        return self.cluster.admin_dsn(DBNAME)

    def asyncpg_kwargs(self) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.tap.port,
            "user": SUBJECT,
            "database": TARGET,
            "password": self.token(),
            "ssl": False,
        }

    # ---- recordings ----------------------------------------------------------------------------

    def recorded_bytes(self) -> Iterator[tuple[Path, bytes]]:
        """Every file the gateway wrote: recordings, the session index, keys excluded."""
        for path in sorted(self.data_dir.rglob("*")):
            if path.is_file() and "keys" not in path.parts and path.suffix not in (".pem", ".key"):
                yield path, path.read_bytes()


@contextlib.contextmanager
def masking_gateway(
    env: MaskEnv, data_dir: Path, masking: dict[str, Any]
) -> Iterator[RunningGateway]:
    """A gateway of its own on the masking database with the audit policy and ``masking``
    (one per masking configuration: the shared one runs the defaults)."""
    cfg = gateway_config(
        data_dir, targets={TARGET: env.db.target()}, policy=AUDIT_POLICY, masking=masking
    )
    with RunningGateway(cfg) as gw:
        yield gw


def describe_leaks(leaks: Iterable[str]) -> str:
    return ", ".join(leaks) or "none"
