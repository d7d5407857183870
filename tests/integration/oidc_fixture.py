"""A real OpenID Connect provider for tests: oidc-provider-mock served by werkzeug on 127.0.0.1.

Usage in a test module (or a conftest.py)::

    from typing import TYPE_CHECKING
    if TYPE_CHECKING:
        from oidc_fixture import OidcProvider

    pytest_plugins = ["oidc_fixture"]  # registers the fixtures below (once per session)

    def test_login(oidc_provider: OidcProvider) -> None:
        token = oidc_provider.id_token("alice", groups=["dba"])   # a signed RS256 ID token
        config = oidc_provider.issuer_config()                    # OidcIssuerConfig for pgwarden
        yaml_snippet = {"issuer": oidc_provider.issuer, "audience": "pgwarden"}

``oidc_provider`` is shared by the whole session: don't rotate its keys or take it down.
``isolated_oidc_provider`` is a fresh provider per test for that, and ``oidc_provider_factory()``
starts as many more as a test wants (stopped at teardown). ``OidcProvider`` also works directly
as a context manager.

Tokens are obtained the way a browser would: POST the provider's authorization form (the mock
lets you pick any subject), follow the redirect's ``code`` to the token endpoint. The ID token's
``aud`` is the client id (``"pgwarden"`` by default) and it carries the user's extra claims
(``groups`` ...). The access token is opaque (not a JWT).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import authlib.deprecate  # noqa: F401  (installs an "always" filter; must come before ours)
import httpx
import pytest
import werkzeug.serving

from pgwarden.auth import OidcIssuerConfig

with warnings.catch_warnings():  # authlib warns about its own deprecated modules on import
    warnings.simplefilter("ignore")
    import oidc_provider_mock


def pytest_configure(config: pytest.Config) -> None:
    # authlib warns on every token the provider issues (oidc-provider-mock uses a deprecated
    # hook); as a plugin this module silences exactly that warning.
    config.addinivalue_line("filterwarnings", "ignore:get_jwt_config:DeprecationWarning")


DEFAULT_CLIENT_ID = "pgwarden"
REDIRECT_URI = "http://127.0.0.1/callback"


@dataclass(frozen=True)
class OidcTokens:
    id_token: str
    access_token: str
    refresh_token: str | None
    response: Mapping[str, Any] = field(repr=False)


class _QuietHandler(werkzeug.serving.WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _Switchboard:
    """WSGI wrapper: counts requests, can play dead, and can swap the app (key rotation)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.down = False
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        with self._lock:
            self.paths.append(environ.get("PATH_INFO", ""))
            app, down = self.app, self.down
        if down:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"provider is down (test switch)"]
        return app(environ, start_response)


class OidcProvider:
    """oidc-provider-mock on http://127.0.0.1:<port>, in a background thread."""

    def __init__(
        self,
        *,
        port: int = 0,
        token_max_age: timedelta = timedelta(hours=1),
        users: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self._port = port
        self._token_max_age = token_max_age
        self._users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self._server: werkzeug.serving.BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._switch = _Switchboard(self._make_app())
        self.issuer = ""

    # --- lifecycle ------------------------------------------------------------------------------

    def _make_app(self) -> Any:
        users = [oidc_provider_mock.User(sub=s, claims=dict(c)) for s, c in self._users.items()]
        return oidc_provider_mock.app(
            access_token_max_age=self._token_max_age,
            user_claims=users,
        )

    def start(self) -> OidcProvider:
        server = werkzeug.serving.make_server(
            "127.0.0.1", self._port, self._switch, threaded=True, request_handler=_QuietHandler
        )
        self._server = server
        self._port = server.server_port
        self.issuer = f"http://127.0.0.1:{server.server_port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"oidc-provider-{server.server_port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    # --- test switches --------------------------------------------------------------------------

    @property
    def down(self) -> bool:
        return self._switch.down

    @down.setter
    def down(self, value: bool) -> None:
        """While down, every endpoint (discovery, JWKS, token) answers 503."""
        self._switch.down = value

    def rotate_keys(self) -> None:
        """Replace the provider's signing key (same issuer URL). Old tokens no longer verify.

        oidc-provider-mock keeps one RSA key per app instance, so this swaps in a new instance;
        users registered through this object are carried over, pending logins are not.
        """
        self._switch.app = self._make_app()

    def requests_to(self, path: str) -> int:
        """How many requests the provider got for ``path`` (e.g. "/jwks")."""
        return self._switch.paths.count(path)

    # --- users and tokens -----------------------------------------------------------------------

    def set_user(self, sub: str, claims: Mapping[str, Any]) -> None:
        """Register (or replace) a user's extra claims, e.g. {"groups": ["dba"]}."""
        self._users[sub] = dict(claims)
        url = f"{self.issuer}/users/{quote(sub, safe='')}"
        response = httpx.put(url, json=dict(claims), timeout=10)
        response.raise_for_status()

    def login(
        self,
        sub: str,
        *,
        groups: Sequence[str] | None = None,
        claims: Mapping[str, Any] | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        scope: str = "openid profile email",
    ) -> OidcTokens:
        """Log ``sub`` in through the authorization code flow and return the tokens."""
        if groups is not None or claims is not None:
            user_claims = dict(self._users.get(sub, {"email": f"{sub}@example.com"}))
            user_claims.update(claims or {})
            if groups is not None:
                user_claims["groups"] = list(groups)
            self.set_user(sub, user_claims)
        with httpx.Client(base_url=self.issuer, timeout=10) as client:
            response = client.post(
                "/oauth2/authorize",
                params={
                    "client_id": client_id,
                    "redirect_uri": REDIRECT_URI,
                    "response_type": "code",
                    "scope": scope,
                    "state": "state",
                    "nonce": "nonce",
                },
                data={"sub": sub},
            )
            if response.status_code != 302:
                raise RuntimeError(
                    f"authorization failed: HTTP {response.status_code}: {response.text[:500]}"
                )
            query = parse_qs(urlsplit(response.headers["location"]).query)
            if "code" not in query:
                raise RuntimeError(f"authorization refused: {query}")
            response = client.post(
                "/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": query["code"][0],
                    "redirect_uri": REDIRECT_URI,
                },
                auth=(client_id, "any-secret"),
            )
            if response.status_code != 200:
                raise RuntimeError(
                    f"token request failed: HTTP {response.status_code}: {response.text[:500]}"
                )
            body = response.json()
        return OidcTokens(
            id_token=body["id_token"],
            access_token=body["access_token"],
            refresh_token=body.get("refresh_token"),
            response=body,
        )

    def id_token(self, sub: str, *, groups: Sequence[str] | None = None, **kwargs: Any) -> str:
        """Shortcut: ``login(...)`` and return just the signed ID token (a JWT)."""
        return self.login(sub, groups=groups, **kwargs).id_token

    def jwks(self) -> dict[str, Any]:
        response = httpx.get(f"{self.issuer}/jwks", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def issuer_config(
        self, audience: str | None = DEFAULT_CLIENT_ID, groups_claim: str = "groups"
    ) -> OidcIssuerConfig:
        """The pgwarden OidcIssuerConfig that trusts this provider."""
        return OidcIssuerConfig(issuer=self.issuer, audience=audience, groups_claim=groups_claim)


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """One provider for the whole session. Read-only use: no rotate_keys(), no down=True."""
    with OidcProvider() as provider:
        yield provider


@pytest.fixture
def isolated_oidc_provider() -> Iterator[OidcProvider]:
    """A provider of its own for one test: free to rotate keys or take down."""
    with OidcProvider() as provider:
        yield provider


@pytest.fixture
def oidc_provider_factory() -> Iterator[Callable[..., OidcProvider]]:
    """``oidc_provider_factory(**kwargs)`` starts another provider; all stop at teardown."""
    started: list[OidcProvider] = []

    def start(**kwargs: Any) -> OidcProvider:
        provider = OidcProvider(**kwargs).start()
        started.append(provider)
        return provider

    yield start
    for provider in started:
        provider.stop()
