from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pgwarden.config import (
    Config,
    ConfigError,
    HostPort,
    load_config,
    parse_config,
    parse_duration,
    substitute_env,
)

FULL_YAML = """\
listen: 127.0.0.1:6432
api:
  listen: 127.0.0.1:8080
data_dir: ./pgwarden-data
store: null
recordings: null
tls:
  cert: /path/cert.pem
  key: /path/key.pem
  require: auto
identity:
  local_issuer: true
  max_token_ttl: 12h
  oidc:
    - issuer: https://idp.example.com
      audience: pgwarden
      groups_claim: groups
targets:
  shop:
    host: 127.0.0.1
    port: 5432
    dbname: shop
    user: app
    password: ${SHOP_DB_PASSWORD}
    sslmode: prefer
policy: default
masking: default
approvals:
  timeout: 10m
  approvers: [dba]
  notify:
    - url: https://hooks.example.com/pgwarden
recording:
  durability: write
"""


def write(tmp_path: Path, text: str, name: str = "pgwarden.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(data: Any, **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data, **kwargs)
    return info.value


# ---- defaults and the contract's example --------------------------------------------------


def test_defaults() -> None:
    config = Config()
    assert config.listen == HostPort("127.0.0.1", 6432)
    assert config.api.listen == HostPort("127.0.0.1", 8080)
    assert config.data_dir == Path("pgwarden-data")
    assert config.store is None and config.recordings is None
    assert config.tls.cert is None and config.tls.key is None and config.tls.require == "auto"
    assert config.identity.local_issuer is True
    assert config.identity.max_token_ttl == 12 * 3600
    assert config.identity.oidc == []
    assert config.targets == {}
    assert config.policy == "default" and config.masking == "default"
    assert config.approvals.timeout == 600
    assert config.approvals.approvers == ["dba"]
    assert config.approvals.min_approvals == 1
    assert config.approvals.notify == []
    assert config.recording.durability == "write"
    assert config.recording.retention is None
    assert config.recording.max_result_rows == 1000
    assert config.auth_timeout == 10
    assert config.max_connections == 1000


def test_no_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}) == Config()


def test_default_file_and_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "listen: 127.0.0.1:7000\n")
    assert load_config(env={}).listen.port == 7000
    other = write(tmp_path, "listen: 127.0.0.1:7001\n", "other.yaml")
    assert load_config(env={"PGWARDEN_CONFIG": str(other)}).listen.port == 7001
    explicit = write(tmp_path, "listen: 127.0.0.1:7002\n", "explicit.yaml")
    assert load_config(explicit, env={"PGWARDEN_CONFIG": str(other)}).listen.port == 7002


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(env={"PGWARDEN_CONFIG": str(tmp_path / "nope.yaml")})


def test_contract_example(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL_YAML), env={"SHOP_DB_PASSWORD": "s3cret"})
    shop = config.targets["shop"]
    assert (shop.host, shop.port, shop.dbname, shop.user, shop.sslmode) == (
        "127.0.0.1",
        5432,
        "shop",
        "app",
        "prefer",
    )
    assert shop.password is not None and shop.password.get_secret_value() == "s3cret"
    assert shop.connect_timeout == 10
    assert config.tls.cert == Path("/path/cert.pem")
    assert config.identity.oidc[0].issuer == "https://idp.example.com"
    assert config.identity.oidc[0].audience == "pgwarden"
    assert config.approvals.timeout == 600
    assert config.approvals.notify[0].url == "https://hooks.example.com/pgwarden"
    assert config.approvals.notify[0].format == "json"


def test_json_input(tmp_path: Path) -> None:
    doc = {
        "listen": "[::1]:7432",
        "targets": {"shop": {"dbname": "shop", "user": "app", "password": "${PW}"}},
        "policy": {"mode": "audit", "default": "allow", "rules": []},
        "identity": {"max_token_ttl": 3600},
    }
    path = write(tmp_path, json.dumps(doc, indent=2), "pgwarden.json")
    config = load_config(path, env={"PW": "x"})
    assert config.listen == HostPort("::1", 7432)
    assert config.policy == {"mode": "audit", "default": "allow", "rules": []}
    assert config.identity.max_token_ttl == 3600


def test_model_validate_works_for_tests() -> None:
    config = Config.model_validate({"targets": {"t": {"dbname": "d", "user": "u"}}})
    assert config.targets["t"].password is None


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing\n"), env={}) == Config()


# ---- ${NAME} substitution --------------------------------------------------------------------


def test_env_substitution_anywhere_in_strings(tmp_path: Path) -> None:
    text = (
        "listen: ${HOST}:${PORT}\n"
        "data_dir: ${BASE}/data\n"
        "approvals:\n  approvers: [${GROUP}, ops]\n"
        "targets:\n  shop:\n    dbname: shop\n    user: app\n    port: ${DBPORT}\n"
    )
    env = {"HOST": "0.0.0.0", "PORT": "7777", "BASE": "/srv", "GROUP": "dba", "DBPORT": "6543"}
    config = load_config(write(tmp_path, text), env=env)
    assert config.listen == HostPort("0.0.0.0", 7777)
    assert config.data_dir == Path("/srv/data")
    assert config.approvals.approvers == ["dba", "ops"]
    assert config.targets["shop"].port == 6543


def test_env_value_is_not_reinterpreted() -> None:
    config = parse_config(
        {"targets": {"t": {"dbname": "d", "user": "u", "password": "${PW}"}}},
        env={"PW": "a: b # ${NOT_A_VAR} 'q'"},
    )
    password = config.targets["t"].password
    assert password is not None
    assert password.get_secret_value() == "a: b # ${NOT_A_VAR} 'q'"


def test_env_fallback_and_escape() -> None:
    assert substitute_env("${MISSING:-dflt}", {}) == "dflt"
    assert substitute_env("${SET:-dflt}", {"SET": "v"}) == "v"
    assert substitute_env("$${LITERAL}", {}) == "${LITERAL}"
    assert substitute_env({"k": [1, True, None]}, {}) == {"k": [1, True, None]}


def test_missing_env_var_names_key_and_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, FULL_YAML), env={})
    message = str(info.value)
    assert message.startswith("targets.shop.password:")
    assert "SHOP_DB_PASSWORD" in message
    assert info.value.key_path == "targets.shop.password"


def test_missing_env_var_in_list_names_index() -> None:
    error = error_of({"approvals": {"notify": [{"url": "${HOOK}"}]}}, env={})
    assert str(error).startswith("approvals.notify[0].url:")
    assert "HOOK" in str(error)


# ---- errors name the key path ------------------------------------------------------------------


def test_unknown_top_level_key() -> None:
    error = error_of({"lisen": "127.0.0.1:1"})
    assert str(error) == "lisen: unknown key"


def test_unknown_nested_key_names_path() -> None:
    error = error_of({"targets": {"shop": {"dbname": "d", "user": "u", "pasword": "x"}}})
    assert str(error) == "targets.shop.pasword: unknown key"
    error = error_of({"identity": {"oidc": [{"issuer": "https://i", "groups": "g"}]}})
    assert str(error) == "identity.oidc[0].groups: unknown key"


@pytest.mark.parametrize("port", [0, 70000, -1, "abc", "54x2"])
def test_bad_target_port(port: object) -> None:
    error = error_of({"targets": {"shop": {"dbname": "d", "user": "u", "port": port}}})
    assert str(error).startswith("targets.shop.port: ")
    assert error.key_path == "targets.shop.port"


@pytest.mark.parametrize(
    "value", ["localhost", "127.0.0.1:", "127.0.0.1:99999", ":::1:5", "[::1]5", True, 1.5]
)
def test_bad_listen(value: object) -> None:
    error = error_of({"listen": value})
    assert str(error).startswith("listen: ")


def test_missing_required_target_keys() -> None:
    error = error_of({"targets": {"shop": {"host": "db"}}})
    paths = [path for path, _ in error.problems]
    assert paths == ["targets.shop.dbname", "targets.shop.user"]
    assert "required" in str(error)


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (
            {"targets": {"s": {"dbname": "d", "user": "u", "sslmode": "allow-ish"}}},
            "targets.s.sslmode",
        ),
        ({"tls": {"require": "maybe"}}, "tls.require"),
        ({"tls": {"cert": "/c.pem"}}, "tls"),
        ({"identity": {"max_token_ttl": "forever"}}, "identity.max_token_ttl"),
        ({"identity": {"max_token_ttl": 0}}, "identity.max_token_ttl"),
        ({"identity": {"oidc": [{"issuer": "not a url"}]}}, "identity.oidc[0].issuer"),
        ({"approvals": {"min_approvals": 0}}, "approvals.min_approvals"),
        (
            {"approvals": {"notify": [{"url": "https://h", "format": "xml"}]}},
            "approvals.notify[0].format",
        ),
        ({"recording": {"durability": "never"}}, "recording.durability"),
        ({"recording": {"retention": "-1d"}}, "recording.retention"),
        ({"store": "mysql://x"}, "store"),
        ({"recordings": "ftp://x/y"}, "recordings"),
        ({"policy": ["deny"]}, "policy"),
        ({"max_connections": 0}, "max_connections"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, Any], path: str) -> None:
    error = error_of(data)
    assert error.key_path == path
    assert str(error).startswith(f"{path}: ")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), env={})


def test_yaml_syntax_error_does_not_echo_the_line(tmp_path: Path) -> None:
    text = 'targets:\n  shop:\n    password: "hunter2\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert "invalid YAML" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert info.value.source is not None


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate key 'listen'"):
        load_config(write(tmp_path, "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n"), env={})


# ---- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12h", 43200),
        ("15m", 900),
        ("30s", 30),
        ("1d", 86400),
        ("1w", 604800),
        ("500ms", 0.5),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1.5h", 5400),
        ("600", 600),
        (" 10M ", 600),
        (42, 42),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "12x", "1h-", "-5s", "nan", "inf", "1e3"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_durations_in_config() -> None:
    config = parse_config(
        {
            "identity": {"max_token_ttl": "1d"},
            "approvals": {"timeout": "10m"},
            "recording": {"retention": "30d"},
            "auth_timeout": "5s",
            "targets": {"t": {"dbname": "d", "user": "u", "connect_timeout": "2s"}},
        }
    )
    assert config.identity.max_token_ttl == 86400
    assert config.approvals.timeout == 600
    assert config.recording.retention == 30 * 86400
    assert config.auth_timeout == 5
    assert config.targets["t"].connect_timeout == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), (True, True), (False, False), ("true", True), ("off", False)],
)
def test_tls_require(value: object, expected: object) -> None:
    assert parse_config({"tls": {"require": value}}).tls.require == expected


def test_yaml_booleans_for_tls_require(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "tls:\n  require: true\n"), env={}).tls.require is True
    assert load_config(write(tmp_path, "tls:\n  require: no\n"), env={}).tls.require is False


@pytest.mark.parametrize(
    ("text", "host", "port", "rendered"),
    [
        ("127.0.0.1:6432", "127.0.0.1", 6432, "127.0.0.1:6432"),
        ("[::1]:6432", "::1", 6432, "[::1]:6432"),
        ("localhost:0", "localhost", 0, "localhost:0"),
        ("0.0.0.0:5", "0.0.0.0", 5, "0.0.0.0:5"),
        ("6432", "127.0.0.1", 6432, "127.0.0.1:6432"),
    ],
)
def test_host_port(text: str, host: str, port: int, rendered: str) -> None:
    parsed = HostPort.parse(text)
    assert (parsed.host, parsed.port) == (host, port)
    assert str(parsed) == rendered
    with pytest.raises(AttributeError):
        parsed.port = 1  # type: ignore[misc]


def test_host_port_serialises_as_string() -> None:
    dumped = Config().model_dump(mode="json")
    assert dumped["listen"] == "127.0.0.1:6432"
    assert dumped["api"]["listen"] == "127.0.0.1:8080"
    assert Config.model_validate(dumped) == Config()


# ---- secrets ------------------------------------------------------------------------------------


def test_password_never_in_repr_or_str(tmp_path: Path) -> None:
    text = FULL_YAML.replace(
        "    - url: https://hooks.example.com/pgwarden",
        "    - url: https://hooks.example.com/pgwarden\n      secret: hook-secret-value",
    )
    text = text.replace("store: null", "store: postgresql://u:store-secret@db/pgwarden")
    config = load_config(write(tmp_path, text), env={"SHOP_DB_PASSWORD": "hunter2-secret"})
    for rendered in (
        repr(config),
        str(config),
        repr(config.targets),
        str(config.targets["shop"]),
        repr(config.approvals),
        json.dumps(config.model_dump(mode="json")),
    ):
        assert "hunter2-secret" not in rendered
        assert "hook-secret-value" not in rendered or rendered.startswith("{")
        assert "store-secret" not in rendered or rendered.startswith("{")
    assert config.targets["shop"].password is not None
    assert config.targets["shop"].password.get_secret_value() == "hunter2-secret"
    assert set(config.secrets()) == {"hunter2-secret", "hook-secret-value", "store-secret"}


def test_password_never_in_error_messages() -> None:
    secret = "hunter2-secret"
    error = error_of(
        {"targets": {"shop": {"dbname": "d", "user": "u", "password": "${PW}", "port": "${PW}"}}},
        env={"PW": secret},
    )
    assert error.key_path == "targets.shop.port"
    assert secret not in str(error)
    assert all(secret not in message for _, message in error.problems)


def test_env_refs_in_flow_style_and_raw_values(tmp_path: Path) -> None:
    text = "targets: {shop: {dbname: shop, user: app, password: ${PW}}}\n"
    config = load_config(write(tmp_path, text), env={"PW": "x, y} # z: [w]"})
    password = config.targets["shop"].password
    assert password is not None
    assert password.get_secret_value() == "x, y} # z: [w]"
