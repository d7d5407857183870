"""pgwarden configuration: one YAML (or JSON) file, validated into typed models.

`load_config()` reads the file, substitutes `${NAME}` with environment variables and validates
the result. Every problem (unknown key, bad value, missing variable, unreadable file) becomes a
`ConfigError` whose message starts with the key path (`targets.shop.port: ...`). Secrets (the
upstream passwords, webhook secrets) never appear in `repr()`/`str()` of the models nor in error
messages.

Extensions over CONTRACT.md:
- `${NAME:-fallback}` substitutes `fallback` when NAME is unset; `$${...}` is a literal `${...}`.
- A `HostPort` may be given as a bare port (`6432`), meaning 127.0.0.1.
- Durations accept `ms`, `s`, `m`, `h`, `d`, `w` suffixes and combinations (`1h30m`).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ApiConfig",
    "ApprovalsConfig",
    "Config",
    "ConfigError",
    "Duration",
    "HostPort",
    "IdentityConfig",
    "NotifyConfig",
    "OidcConfig",
    "RecordingConfig",
    "TargetConfig",
    "TlsConfig",
    "load_config",
    "parse_config",
    "parse_duration",
    "resolve_config_path",
    "substitute_env",
]

DEFAULT_CONFIG_FILE = "pgwarden.yaml"
CONFIG_ENV_VAR = "PGWARDEN_CONFIG"


class ConfigError(Exception):
    """A configuration problem. The message starts with the key path when there is one.

    `problems` holds one `(key_path, message)` pair per problem; `source` is the file, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        problems: list[tuple[str, str]] | None = None,
        source: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = problems if problems is not None else []
        self.source = source

    @property
    def key_path(self) -> str | None:
        """The key path of the first problem ('' for the document root), if known."""
        return self.problems[0][0] if self.problems else None


# --------------------------------------------------------------------------------------------
# Durations


_DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|sec|min|s|m|h|d|w)", re.IGNORECASE)
_NUMBER = re.compile(r"[+]?(\d+(?:\.\d+)?|\.\d+)")


def parse_duration(value: str | float) -> float:
    """Parse a duration into seconds: a number (seconds) or a string like "12h", "15m",
    "30s", "1d", "500ms", "1h30m", "600". Negative, NaN and infinite values are rejected."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 12h or 1d, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("empty duration")
        if _NUMBER.fullmatch(text):
            seconds = float(text)
        else:
            pos = 0
            seconds = 0.0
            compact = text.replace(" ", "")
            for match in _DURATION_PART.finditer(compact):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
                pos = match.end()
            if pos != len(compact) or pos == 0:
                raise ValueError(
                    f"invalid duration {value!r}: expected e.g. 30s, 15m, 12h, 1d or a number "
                    "of seconds"
                )
    else:
        raise ValueError(f"expected a duration, got {type(value).__name__}")
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be a finite, non-negative number")
    return seconds


def _duration_validator(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str | int | float):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("duration", str(exc)) from None
    raise PydanticCustomError(
        "duration", "expected a duration such as 30s, 15m, 12h or 1d, or a number of seconds"
    )


Duration = Annotated[float, BeforeValidator(_duration_validator)]
"""A number of seconds; the config may also say "15m", "12h", "1d", ..."""


# --------------------------------------------------------------------------------------------
# host:port


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to listen on or connect to. Port 0 means "any free port"."""

    host: str
    port: int

    @classmethod
    def parse(cls, value: str | int | HostPort, *, default_host: str = "127.0.0.1") -> HostPort:
        """Parse "host:port", "[::1]:port", or a bare port (which means `default_host`)."""
        if isinstance(value, HostPort):
            return value
        if isinstance(value, bool):
            raise ValueError("expected host:port, not a boolean")
        if isinstance(value, int):
            return cls(default_host, _check_port(value))
        if not isinstance(value, str):
            raise ValueError(f"expected host:port, got {type(value).__name__}")
        text = value.strip()
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or text[end + 1 : end + 2] != ":":
                raise ValueError(f"invalid address {value!r}: expected [ipv6]:port")
            host, port_text = text[1:end], text[end + 2 :]
            if not host:
                raise ValueError(f"invalid address {value!r}: empty host")
        elif text.isdigit():
            host, port_text = default_host, text
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep or not host:
                raise ValueError(f"invalid address {value!r}: expected host:port")
            if ":" in host:
                raise ValueError(
                    f"invalid address {value!r}: write IPv6 addresses as [address]:port"
                )
        if not port_text.isdigit():
            raise ValueError(f"invalid port in {value!r}: expected a number from 0 to 65535")
        return cls(host, _check_port(int(port_text)))

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def validate(value: Any) -> HostPort:
            try:
                return cls.parse(value)
            except ValueError as exc:
                raise PydanticCustomError("host_port", str(exc)) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="always"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "description": "host:port or [ipv6]:port"}


def _check_port(port: int) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range: expected a number from 0 to 65535")
    return port


# --------------------------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_default=True)


def _tls_require(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "yes", "on", "1"}:
            return True
        if lowered in {"false", "no", "off", "0"}:
            return False
        if lowered == "auto":
            return "auto"
    return value


def _expand_path(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise PydanticCustomError("path", "empty path")
        return Path(value).expanduser()
    if isinstance(value, Path):
        return value.expanduser()
    return value


ConfigPath = Annotated[Path, BeforeValidator(_expand_path)]


class ApiConfig(_Model):
    listen: HostPort = HostPort("127.0.0.1", 8080)
    # roles from token groups: auditors read sessions and recordings, admins also see the
    # policy (and everything auditors see); approvers are approvals.approvers
    auditors: list[str] = Field(default_factory=lambda: ["auditors"])
    admins: list[str] = Field(default_factory=lambda: ["admins"])


class TlsConfig(_Model):
    cert: ConfigPath | None = None
    key: ConfigPath | None = None
    require: Annotated[Literal["auto", True, False], BeforeValidator(_tls_require)] = "auto"

    @model_validator(mode="after")
    def _cert_and_key(self) -> Self:
        if (self.cert is None) != (self.key is None):
            raise ValueError("cert and key must be given together")
        return self


class OidcConfig(_Model):
    issuer: str
    audience: str | None = None
    groups_claim: str = "groups"
    # The web console signs people in through this issuer (authorization code flow with PKCE)
    # as OAuth client ``client_id`` (default: ``audience``); ``client_secret`` only for a
    # confidential client. The wire protocol and the API never use these.
    client_id: str | None = None
    client_secret: str | None = Field(default=None, repr=False)
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"https", "http"} or not parts.netloc:
            raise ValueError("expected an http(s):// URL")
        return value

    @field_validator("groups_claim")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("client_id", "client_secret")
    @classmethod
    def _non_empty_when_set(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty (leave it out instead)")
        return value

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: list[str]) -> list[str]:
        if "openid" not in value:
            raise ValueError("must include 'openid' (the console signs in with OpenID Connect)")
        if any(not s or any(c.isspace() for c in s) for s in value):
            raise ValueError("each scope must be a non-empty word without spaces")
        return value


class IdentityConfig(_Model):
    local_issuer: bool = True
    max_token_ttl: Duration = 12 * 3600.0
    oidc: list[OidcConfig] = Field(default_factory=list)

    @field_validator("max_token_ttl")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value


SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]


class TargetConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str
    user: str
    password: SecretStr | None = None
    sslmode: SslMode = "prefer"
    sslrootcert: ConfigPath | None = None
    connect_timeout: Duration = 10.0

    @field_validator("host", "dbname", "user")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("connect_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value


class NotifyConfig(_Model):
    url: str
    format: Literal["json", "slack"] = "json"
    secret: str | None = Field(default=None, repr=False)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"https", "http"} or not parts.netloc:
            raise ValueError("expected an http(s):// URL")
        return value


class ApprovalsConfig(_Model):
    timeout: Duration = 600.0
    approvers: list[str] = Field(default_factory=lambda: ["dba"])
    min_approvals: int = Field(default=1, ge=1)
    notify: list[NotifyConfig] = Field(default_factory=list)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value


class RecordingConfig(_Model):
    durability: Literal["write", "fsync"] = "write"
    retention: Duration | None = None
    max_result_rows: int = Field(default=1000, ge=0)


def _policy_like(value: Any) -> Any:
    if isinstance(value, str | Mapping):
        return value
    raise PydanticCustomError("policy", "expected 'default' or a mapping")


class Config(_Model):
    listen: HostPort = HostPort("127.0.0.1", 6432)
    api: ApiConfig = Field(default_factory=ApiConfig)
    data_dir: ConfigPath = Path("./pgwarden-data")
    store: str | None = None
    recordings: str | None = None
    tls: TlsConfig = Field(default_factory=TlsConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    policy: Annotated[Any, BeforeValidator(_policy_like)] = "default"
    masking: Annotated[Any, BeforeValidator(_policy_like)] = "default"
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    recording: RecordingConfig = Field(default_factory=RecordingConfig)
    auth_timeout: Duration = 10.0
    max_connections: int = Field(default=1000, ge=1)

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme
        if scheme not in {"postgresql", "postgres", "sqlite"}:
            raise ValueError("expected null (SQLite in data_dir) or a postgresql:// URL")
        return value

    @field_validator("recordings")
    @classmethod
    def _recordings_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value:
            raise ValueError("must not be empty")
        if "://" in value:
            parts = urlsplit(value)
            if parts.scheme == "s3":
                if not parts.netloc:
                    raise ValueError("expected s3://bucket/prefix")
            elif parts.scheme != "file":
                raise ValueError("expected null, a local directory, or s3://bucket/prefix")
        return value

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, TargetConfig]) -> dict[str, TargetConfig]:
        for name in value:
            if not name:
                raise ValueError("target names must not be empty")
        return value

    @field_validator("auth_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name == "store" and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    def secrets(self) -> list[str]:
        """Every secret value in this config (for scrubbing logs and error messages)."""
        found = [
            t.password.get_secret_value() for t in self.targets.values() if t.password is not None
        ]
        found += [n.secret for n in self.approvals.notify if n.secret]
        found += [o.client_secret for o in self.identity.oidc if o.client_secret]
        if self.store:
            password = urlsplit(self.store).password
            if password:
                found.append(password)
        return [s for s in found if s]


def redact_url(url: str) -> str:
    """Replace the password in a URL's user-info with `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# --------------------------------------------------------------------------------------------
# Loading


_ENV_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _format_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def substitute_env(data: Any, env: Mapping[str, str], _path: tuple[str | int, ...] = ()) -> Any:
    """Replace `${NAME}` in every string value (not keys) of a parsed document.

    `${NAME:-fallback}` uses `fallback` when NAME is unset; `$${` is a literal `${`.
    Raises ConfigError naming the key path and the variable when NAME is unset.
    """
    if isinstance(data, str):
        if "${" not in data:
            return data

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            inner = match.group(1)
            name, sep, fallback = inner.partition(":-")
            key = _format_path(_path) or "(document)"
            if not _ENV_NAME.fullmatch(name):
                raise ConfigError(
                    f"{key}: invalid variable reference ${{{inner}}}",
                    problems=[(key, f"invalid variable reference ${{{inner}}}")],
                )
            if name in env:
                return env[name]
            if sep:
                return fallback
            message = f"environment variable {name} is not set"
            raise ConfigError(f"{key}: {message}", problems=[(key, message)])

        return _ENV_REF.sub(replace, data)
    if isinstance(data, Mapping):
        return {k: substitute_env(v, env, (*_path, str(k))) for k, v in data.items()}
    if isinstance(data, list):
        return [substitute_env(v, env, (*_path, i)) for i, v in enumerate(data)]
    return data


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def _collect_secret_candidates(data: Any) -> list[str]:
    """Values under keys that look secret, from raw (substituted) data, for error scrubbing."""
    found: list[str] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, str) and str(key).lower() in {"password", "secret"}:
                found.append(value)
            elif isinstance(value, str) and str(key).lower() == "store":
                try:
                    password = urlsplit(value).password
                except ValueError:
                    password = None
                if password:
                    found.append(password)
            else:
                found.extend(_collect_secret_candidates(value))
    elif isinstance(data, list):
        for value in data:
            found.extend(_collect_secret_candidates(value))
    return found


def _describe_error(error: Mapping[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def _error_loc(error: Mapping[str, Any]) -> tuple[str | int, ...]:
    loc: tuple[str | int, ...] = tuple(error.get("loc", ()))
    # Drop the synthetic segments pydantic adds for validators of Annotated/union types.
    cleaned: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and (
            part.startswith("function-")
            or part in {"literal['auto',True,False]", "json-or-python[json=str,python=str]"}
        ):
            continue
        cleaned.append(part)
    return tuple(cleaned)


def parse_config(
    data: Any,
    *,
    env: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> Config:
    """Validate an already-parsed document (substituting `${NAME}` first)."""
    if env is None:
        env = os.environ
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        message = f"expected a mapping at the top level, got {type(data).__name__}"
        raise ConfigError(message, problems=[("", message)], source=source)
    try:
        substituted = substitute_env(data, env)
    except ConfigError as exc:
        exc.source = source
        raise
    try:
        return Config.model_validate(substituted)
    except ValidationError as exc:
        secrets = _collect_secret_candidates(substituted)
        problems: list[tuple[str, str]] = []
        for error in exc.errors(include_input=False, include_url=False):
            key = _format_path(_error_loc(error))
            problems.append((key, _scrub(_describe_error(error), secrets)))
        message = "; ".join(f"{key}: {msg}" if key else msg for key, msg in problems)
        raise ConfigError(message, problems=problems, source=source) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be scalars", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)  # type: ignore[no-untyped-call]
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


_ENV_REF_TEXT = re.compile(r"\$?\$\{[^}\n]*\}")


def _mask_env_refs(text: str) -> tuple[str, re.Pattern[str], list[str]]:
    """Replace each `${...}` in the raw text with a plain alphanumeric placeholder, so that a
    reference is valid YAML anywhere (`[${A}, b]`, `{k: ${B}}`) and the variable's value is
    never parsed as YAML. `_unmask_env_refs` puts the references back after parsing."""
    nonce = secrets.token_hex(4)
    originals: list[str] = []

    def mask(match: re.Match[str]) -> str:
        originals.append(match.group(0))
        return f"pgwardenenv{nonce}n{len(originals) - 1}e"

    masked = _ENV_REF_TEXT.sub(mask, text)
    return masked, re.compile(rf"pgwardenenv{nonce}n(\d+)e"), originals


def _unmask_env_refs(data: Any, pattern: re.Pattern[str], originals: list[str]) -> Any:
    if isinstance(data, str):
        return pattern.sub(lambda m: originals[int(m.group(1))], data)
    if isinstance(data, dict):
        return {
            _unmask_env_refs(k, pattern, originals): _unmask_env_refs(v, pattern, originals)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [_unmask_env_refs(v, pattern, originals) for v in data]
    return data


def _parse_text(text: str, source: Path | None) -> Any:
    if "${" in text:
        masked, pattern, originals = _mask_env_refs(text)
        return _unmask_env_refs(_parse_masked_text(masked, source), pattern, originals)
    return _parse_masked_text(text, source)


def _parse_masked_text(text: str, source: Path | None) -> Any:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if source is not None and source.suffix.lower() == ".json":
                message = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                raise ConfigError(message, problems=[("", message)], source=source) from None
            # Not JSON after all: YAML flow style is a superset; fall through.
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # Never include the snippet: the offending line could hold a secret.
        where = ""
        mark = exc.problem_mark or exc.context_mark
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = exc.problem or exc.context or "syntax error"
        message = f"invalid YAML{where}: {problem}"
        raise ConfigError(message, problems=[("", message)], source=source) from None
    except yaml.YAMLError as exc:
        message = f"invalid YAML: {type(exc).__name__}"
        raise ConfigError(message, problems=[("", message)], source=source) from None


def resolve_config_path(
    path: str | Path | None = None, *, env: Mapping[str, str] | None = None
) -> tuple[Path | None, bool]:
    """Which file to read: (path, explicit). `path` wins, then $PGWARDEN_CONFIG, then
    ./pgwarden.yaml (not explicit: a missing default file means built-in defaults)."""
    if env is None:
        env = os.environ
    if path is not None and str(path) != "":
        return Path(path).expanduser(), True
    from_env = env.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env).expanduser(), True
    default = Path(DEFAULT_CONFIG_FILE)
    if default.exists():
        return default, False
    return None, False


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the configuration.

    Path resolution: `path`, else $PGWARDEN_CONFIG, else ./pgwarden.yaml. When no file is
    named and ./pgwarden.yaml does not exist, the defaults are returned. A named file that does
    not exist (argument or $PGWARDEN_CONFIG) is an error.
    """
    if env is None:
        env = os.environ
    resolved, _explicit = resolve_config_path(path, env=env)
    if resolved is None:
        return Config()
    try:
        text = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        message = f"config file {resolved} does not exist"
        raise ConfigError(message, problems=[("", message)], source=resolved) from None
    except IsADirectoryError:
        message = f"config file {resolved} is a directory"
        raise ConfigError(message, problems=[("", message)], source=resolved) from None
    except OSError as exc:
        message = f"cannot read config file {resolved}: {exc.strerror or exc}"
        raise ConfigError(message, problems=[("", message)], source=resolved) from None
    except UnicodeDecodeError:
        message = f"config file {resolved} is not UTF-8 text"
        raise ConfigError(message, problems=[("", message)], source=resolved) from None
    data = _parse_text(text, resolved)
    return parse_config(data, env=env, source=resolved)
