"""The console's sign-in pieces on their own: PKCE, the login transaction, cookies, the
redirect-after-login guard, the cookie key file, and which issuer the console signs in with."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer

from pgwarden.config import Config
from pgwarden.console.auth import (
    ConsoleUser,
    CookieCodec,
    LoginTransaction,
    OidcClient,
    console_groups,
    load_or_create_secret,
    safe_next,
)

SECRET = b"k" * 64


def test_login_transaction_pkce_s256() -> None:
    tx = LoginTransaction.new("http://gw/console/callback", "/console/sessions")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,128}", tx.verifier)  # RFC 7636 section 4.1
    digest = hashlib.sha256(tx.verifier.encode("ascii")).digest()
    assert tx.code_challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    other = LoginTransaction.new("http://gw/console/callback")
    assert len({tx.state, tx.nonce, tx.verifier, other.state, other.nonce, other.verifier}) == 6
    assert other.next == "/console"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/console/sessions?subject=a", "/console/sessions?subject=a"),
        ("/console", "/console"),
        (None, "/console"),
        ("", "/console"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/consolex", "/console"),
        ("/console\\@evil", "/console"),
        ("/console/\r\nSet-Cookie: x", "/console"),
        ("/api/v1/approvals", "/console"),
    ],
)
def test_safe_next_stays_inside_the_console(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def _user(expires_at: float = 2e9) -> ConsoleUser:
    return ConsoleUser("dora", ("dba",), "https://idp", expires_at, "csrf-token", "oidc")


def test_user_cookie_round_trip_and_tamper() -> None:
    codec = CookieCodec(SECRET, clock=lambda: 1e9)
    value = codec.dump_user(_user())
    assert codec.load_user(value) == _user()
    # a changed cookie, another key, or a login cookie passed as a session: not signed in
    assert codec.load_user(value[:-2] + ("AA" if not value.endswith("AA") else "BB")) is None
    assert CookieCodec(b"x" * 64).load_user(value) is None
    tx = LoginTransaction.new("http://gw/console/callback")
    assert codec.load_user(codec.dump_login(tx)) is None
    assert codec.load_user(None) is None
    # a cookie someone made with the key but a different shape
    forged = URLSafeTimedSerializer(SECRET, salt="pgwarden-console-session").dumps({"sub": 1})
    assert codec.load_user(forged) is None


def test_user_cookie_expires_with_the_token() -> None:
    now = [1000.0]
    codec = CookieCodec(SECRET, clock=lambda: now[0])
    value = codec.dump_user(_user(expires_at=1100.0))
    assert codec.load_user(value) is not None
    now[0] = 1100.0
    assert codec.load_user(value) is None


def test_login_cookie_round_trip() -> None:
    codec = CookieCodec(SECRET)
    tx = LoginTransaction.new("http://gw/console/callback", "/console/approvals/apr_x")
    assert codec.load_login(codec.dump_login(tx)) == tx
    assert codec.load_login("garbage") is None


def test_csrf_check() -> None:
    user = _user()
    assert user.csrf_ok("csrf-token")
    assert not user.csrf_ok("csrf-tokeN")
    assert not user.csrf_ok("")
    assert not user.csrf_ok(None)


def test_secret_made_once_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_or_create_secret(data_dir)
    assert len(first) >= 32
    assert load_or_create_secret(data_dir) == first
    mode = stat.S_IMODE(os.stat(data_dir / "console-session.key").st_mode)
    assert mode == 0o600
    assert [p.name for p in data_dir.iterdir()] == ["console-session.key"]  # no temp file left


def test_secret_file_too_short_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "console-session.key").write_text("short\n")
    with pytest.raises(ValueError, match="no usable console key"):
        load_or_create_secret(tmp_path)


def _config(oidc: list[dict[str, object]]) -> Config:
    return Config.model_validate({"identity": {"oidc": oidc}})


def test_oidc_client_choice() -> None:
    assert OidcClient.from_config(_config([])) is None
    # without client_id, the audience is the client id
    c = OidcClient.from_config(_config([{"issuer": "https://a.example", "audience": "pgw"}]))
    assert c is not None and (c.issuer, c.client_id, c.client_secret) == (
        "https://a.example",
        "pgw",
        None,
    )
    assert c.scopes == ("openid", "profile", "email")
    # neither: no console client
    assert OidcClient.from_config(_config([{"issuer": "https://a.example"}])) is None
    # the first entry with a client_id wins
    c = OidcClient.from_config(
        _config(
            [
                {"issuer": "https://a.example", "audience": "pgw"},
                {
                    "issuer": "https://b.example",
                    "client_id": "console",
                    "client_secret": "s3cret",
                    "scopes": ["openid", "groups"],
                    "groups_claim": "roles",
                },
            ]
        )
    )
    assert c is not None
    assert (c.issuer, c.client_id, c.client_secret, c.scopes, c.groups_claim) == (
        "https://b.example",
        "console",
        "s3cret",
        ("openid", "groups"),
        "roles",
    )


def test_oidc_config_keys_checked() -> None:
    with pytest.raises(ValueError, match="openid"):
        _config([{"issuer": "https://a.example", "scopes": ["profile"]}])
    with pytest.raises(ValueError, match="must not be empty"):
        _config([{"issuer": "https://a.example", "client_id": ""}])
    cfg = _config([{"issuer": "https://a.example", "client_id": "c", "client_secret": "s3cret"}])
    assert "s3cret" in cfg.secrets()  # scrubbed from logs and errors
    assert "s3cret" not in repr(cfg)


def test_console_groups_keep_only_roles() -> None:
    cfg = Config.model_validate({"api": {"auditors": ["sec"]}, "approvals": {"approvers": ["dba"]}})
    assert console_groups(["eng", "dba", "sec", "admins", "x" * 300], cfg) == (
        "dba",
        "sec",
        "admins",
    )
