"""Signing in to the console through a real OpenID Connect provider (oidc-provider-mock over
HTTP on loopback), made to enforce PKCE the way production providers do: a code is redeemed
only with the verifier behind the challenge its authorization request carried.

Refused: a callback whose state is not the one this browser started, a callback with no
sign-in started, a code from another sign-in (PKCE), an ID token minted for another nonce, and
the provider's own refusal."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge

from pgwarden.console.auth import (
    LOGIN_COOKIE,
    CookieCodec,
    LoginTransaction,
    load_or_create_secret,
)
from tests.support.console_app import Browser, Env

pytest_plugins = ["oidc_fixture"]

CLIENT_ID = "pgwarden-console"
# the provider accepts any secret; a confidential client (the console's server holds the
# secret) is what web consoles are at most providers, and PKCE is used either way
CLIENT_SECRET = "console-secret"


class PkceEnforcer:
    """WSGI middleware in front of the provider: remembers each issued code's
    ``code_challenge`` and refuses a token request whose ``code_verifier`` does not match
    (RFC 7636 section 4.6), as a production provider does."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.challenges: dict[str, tuple[str | None, str | None]] = {}
        self.verified = 0
        self.refused = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/oauth2/authorize" and method == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            asked = (
                query.get("code_challenge", [None])[0],
                query.get("code_challenge_method", [None])[0],
            )

            def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
                location = dict(headers).get("Location", "")
                code = parse_qs(urlsplit(location).query).get("code", [None])[0]
                if code:
                    with self._lock:
                        self.challenges[code] = asked
                return start_response(status, headers, *exc)

            return self.app(environ, capture)  # type: ignore[no-any-return]
        if path == "/oauth2/token" and method == "POST":
            raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            form = parse_qs(raw.decode())
            code = form.get("code", [""])[0]
            verifier = form.get("code_verifier", [None])[0]
            with self._lock:
                challenge, challenge_method = self.challenges.pop(code, (None, None))
            if not (
                challenge
                and challenge_method == "S256"
                and verifier
                and compare_s256_code_challenge(verifier, challenge)
            ):
                self.refused += 1
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                body = {"error": "invalid_grant", "error_description": "PKCE verification failed"}
                return [json.dumps(body).encode()]
            self.verified += 1
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        return self.app(environ, start_response)  # type: ignore[no-any-return]


def pkce_provider() -> Any:
    """oidc_fixture's OidcProvider with the PkceEnforcer in front (imported here, after
    pytest_plugins has loaded oidc_fixture as a plugin, so its asserts stay rewritten)."""
    from oidc_fixture import OidcProvider  # noqa: PLC0415

    class PkceProvider(OidcProvider):  # type: ignore[misc]
        enforcer: PkceEnforcer

        def _make_app(self) -> Any:
            self.enforcer = PkceEnforcer(super()._make_app())
            return self.enforcer

    return PkceProvider()


@pytest.fixture(scope="module")
def provider() -> Iterator[Any]:
    with pkce_provider() as p:
        p.set_user("dora", {"groups": ["dba"], "email": "dora@example.com"})
        p.set_user("audrey", {"groups": ["auditors", "staff"]})
        yield p


@pytest.fixture
def env(tmp_path: Path, provider: Any) -> Iterator[Env]:
    e = Env.open(
        tmp_path / "data",
        identity={
            "oidc": [
                {
                    "issuer": provider.issuer,
                    "audience": "pgwarden",
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                }
            ]
        },
    )
    yield e
    e.close()


def _browser(env: Env) -> Browser:
    return env.browser()


def _authorize(provider: Any, url: str, sub: str, *, deny: bool = False) -> str:
    """What a person does at the provider's page: pick a subject (or deny); returns the
    redirect back to the console."""
    data = {"action": "deny"} if deny else {"sub": sub}
    response = httpx.post(url, data=data, timeout=10)
    assert response.status_code == 302, response.text[:500]
    return response.headers["location"]


def _start(browser: Browser, next_url: str = "/console/sessions") -> str:
    response = browser.get(f"/console/login/oidc?next={next_url}")
    assert response.status_code == 303, response.text
    return response.headers["location"]


def _callback(browser: Browser, location: str) -> httpx.Response:
    parts = urlsplit(location)
    assert parts.path == "/console/callback"
    return browser.get(f"{parts.path}?{parts.query}")


def test_sign_in_with_pkce(env: Env, provider: Any) -> None:
    browser = _browser(env)
    login = browser.get("/console/login?next=/console/sessions")
    assert f"Sign in with 127.0.0.1:{provider.port}" in login.text
    url = _start(browser)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{provider.issuer}/oauth2/authorize?")
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == ["http://testserver/console/callback"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["state"][0] and query["nonce"][0]
    assert query["scope"] == ["openid profile email"]
    verified = provider.enforcer.verified
    done = _callback(browser, _authorize(provider, url, "audrey"))
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console/sessions"
    assert provider.enforcer.verified == verified + 1
    cookies = done.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("pgwarden_console="))
    assert "HttpOnly" in session and "SameSite=lax" in session
    assert any(c.startswith(f"{LOGIN_COOKIE}=") and "Max-Age=0" in c for c in cookies)
    page = browser.get("/console/sessions")
    assert page.status_code == 200 and "audrey" in page.text and "auditor" in page.text
    # the groups claim gives the roles: dora is an approver, not an auditor
    dora = _browser(env)
    _callback(dora, _authorize(provider, _start(dora, "/console"), "dora"))
    assert dora.get("/console/sessions").status_code == 403
    assert dora.get("/console/approvals").status_code == 200


def test_state_mismatch_refused(env: Env, provider: Any) -> None:
    browser = _browser(env)
    back = _authorize(provider, _start(browser), "audrey")
    parts = urlsplit(back)
    query = parse_qs(parts.query)
    tokens_before = provider.requests_to("/oauth2/token")
    forged = browser.get(f"/console/callback?code={query['code'][0]}&state=someone-elses")
    assert forged.status_code == 400 and "state mismatch" in forged.text
    assert provider.requests_to("/oauth2/token") == tokens_before  # the code was not redeemed
    assert "pgwarden_console=" not in ";".join(forged.headers.get_list("set-cookie"))
    assert browser.get("/console/sessions").status_code == 303
    # nor with no state at all
    assert browser.get(f"/console/callback?code={query['code'][0]}").status_code == 400


def test_callback_without_a_sign_in_refused(env: Env, provider: Any) -> None:
    starter = _browser(env)
    back = _authorize(provider, _start(starter), "audrey")
    # the same redirect opened in another browser (a link sent to a victim): no login cookie
    victim = _browser(env)
    response = _callback(victim, back)
    assert response.status_code == 400 and "no sign-in was started" in response.text
    assert victim.get("/console/sessions").status_code == 303


def test_code_from_another_sign_in_refused_by_pkce(env: Env, provider: Any) -> None:
    """Code injection: an attacker's code pasted into a victim's callback with the victim's
    own state. The state matches, but the victim's verifier does not match the challenge the
    attacker's code was issued for, so the provider refuses to redeem it."""
    attacker = _browser(env)
    attacker_back = _authorize(provider, _start(attacker), "mallory")
    attacker_code = parse_qs(urlsplit(attacker_back).query)["code"][0]
    victim = _browser(env)
    victim_url = _start(victim)
    victim_state = parse_qs(urlsplit(victim_url).query)["state"][0]
    refused = provider.enforcer.refused
    response = victim.get(f"/console/callback?code={attacker_code}&state={victim_state}")
    assert response.status_code == 400, response.text
    assert "refused the code" in response.text and "invalid_grant" in response.text
    assert provider.enforcer.refused == refused + 1
    assert victim.get("/console/sessions").status_code == 303


def test_id_token_for_another_nonce_refused(env: Env, provider: Any) -> None:
    browser = _browser(env)
    url = _start(browser)
    back = _authorize(provider, url, "audrey")
    # the same sign-in, but a login cookie (signed with the gateway's key) expecting another
    # nonce: the ID token, minted for the first nonce, must be refused
    codec = CookieCodec(load_or_create_secret(env.data_dir))
    tx = codec.load_login(browser.cookies.get(LOGIN_COOKIE))
    assert tx is not None
    other = LoginTransaction(tx.state, "another-nonce", tx.verifier, tx.redirect_uri, tx.next)
    browser.cookies.set(
        LOGIN_COOKIE, codec.dump_login(other), domain="testserver.local", path="/console"
    )
    response = _callback(browser, back)
    assert response.status_code == 400 and "nonce mismatch" in response.text


def test_provider_refusal_shown(env: Env, provider: Any) -> None:
    browser = _browser(env)
    back = _authorize(provider, _start(browser), "", deny=True)
    response = _callback(browser, back)
    assert response.status_code == 400 and "access_denied" in response.text


def test_id_token_checked_like_a_wire_token(tmp_path: Path, provider: Any) -> None:
    """The ID token goes through the gateway's own TokenVerifier: its lifetime (the provider
    mints one-hour tokens) may not exceed identity.max_token_ttl."""
    e = Env.open(
        tmp_path / "data",
        identity={
            "max_token_ttl": "30m",
            "oidc": [
                {"issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
            ],
        },
    )
    try:
        browser = e.browser()
        response = _callback(browser, _authorize(provider, _start(browser), "audrey"))
        assert response.status_code == 400
        assert "the ID token was refused" in response.text and "max_token_ttl" in response.text
    finally:
        e.close()


def test_unreachable_provider_explained(tmp_path: Path) -> None:
    e = Env.open(
        tmp_path / "data", identity={"oidc": [{"issuer": "http://127.0.0.1:9", "client_id": "c"}]}
    )
    try:
        response = e.browser().get("/console/login/oidc")
        assert response.status_code == 502 and "could not be reached" in response.text
    finally:
        e.close()
