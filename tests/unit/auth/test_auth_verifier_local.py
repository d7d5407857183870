"""TokenVerifier with the local issuer: the happy path and every way a token must be refused."""

from __future__ import annotations

import asyncio
import base64
import json
import types
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgwarden.auth import AuthError, Identity, LocalIssuer, TokenVerifier

NOT_A_TOKEN = "password is not a token (expected a JWT)"


def verify(verifier: TokenVerifier, token: str, user: str = "alice") -> Identity:
    return asyncio.run(verifier.verify(token, user=user))


def refused(verifier: TokenVerifier, token: str, user: str = "alice") -> AuthError:
    with pytest.raises(AuthError) as info:
        verify(verifier, token, user)
    err = info.value
    # Whatever went wrong, the token never appears in the message.
    if len(token.strip()) >= 8:
        assert token.strip() not in err.message
        assert token.strip()[-20:] not in err.message
    assert err.sqlstate in ("28P01", "28000")
    assert str(err) == err.message
    return err


def local_header(local: LocalIssuer, alg: str = "EdDSA") -> dict[str, str]:
    return {"alg": alg, "typ": "JWT", "kid": local.kid}


# --- the happy path ----------------------------------------------------------------------------


def test_round_trip(verifier, local, clock) -> None:
    token = local.issue("alice", ["dba", "dev"], ttl_seconds=900, extra_claims={"team": "x"})
    identity = verify(verifier, token)
    assert identity.subject == "alice"
    assert identity.groups == ("dba", "dev")
    assert identity.issuer == "pgwarden-local"
    assert identity.expires_at == int(clock()) + 900
    assert identity.issued_at == int(clock())
    assert identity.token_id is not None and len(identity.token_id) >= 16
    assert identity.claims["team"] == "x"
    assert identity.claims["sub"] == "alice"
    assert token not in json.dumps(dict(identity.claims))
    # Read-only claims; the identity itself is immutable and hashable.
    assert isinstance(identity.claims, types.MappingProxyType)
    with pytest.raises(TypeError):
        identity.claims["sub"] = "root"  # type: ignore[index]
    with pytest.raises(AttributeError):
        identity.subject = "root"  # type: ignore[misc]
    hash(identity)
    assert not identity.expired(clock())
    assert identity.expired(identity.expires_at)


def test_surrounding_whitespace_is_ignored(verifier, local) -> None:
    assert verify(verifier, "  " + local.issue("alice") + "\n").subject == "alice"


def test_identify_has_no_user_check(verifier, local) -> None:
    identity = asyncio.run(verifier.identify(local.issue("bob")))
    assert identity.subject == "bob"


# --- time ---------------------------------------------------------------------------------------


def test_expired(verifier, local, clock) -> None:
    token = local.issue("alice", ttl_seconds=60)
    clock.advance(60 + 29)  # within the 30 s leeway
    verify(verifier, token)
    clock.advance(2)
    err = refused(verifier, token)
    exp = clock.now - 91 + 60
    expected = datetime.fromtimestamp(int(exp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert err.message == f"token expired at {expected}"
    assert err.sqlstate == "28P01"


def test_not_yet_valid(verifier, local_key, clock) -> None:
    future = LocalIssuer(local_key, clock=lambda: clock.now + 3600)
    token = future.issue("alice")
    err = refused(verifier, token)
    assert err.message == "token not valid before 2027-01-15T09:00:00Z"
    clock.advance(3600 - 31)  # still outside the 30 s leeway
    refused(verifier, token)
    clock.advance(2)  # now inside it
    verify(verifier, token)


def test_issued_in_the_future_without_nbf(verifier, local, local_key, local_claims, forge) -> None:
    claims = local_claims(nbf=None)
    claims["iat"] += 600
    claims["exp"] += 600
    err = refused(verifier, forge(local_header(local), claims, local_key))
    assert err.message.startswith("token issued in the future")


def test_missing_exp(verifier, local, local_key, local_claims, forge) -> None:
    err = refused(verifier, forge(local_header(local), local_claims(exp=None), local_key))
    assert err.message == "token has no expiry (exp)"


@pytest.mark.parametrize("bad", ["1800000900", True, [1800000900], {"t": 1}])
def test_exp_must_be_a_number(verifier, local, local_key, local_claims, forge, bad) -> None:
    err = refused(verifier, forge(local_header(local), local_claims(exp=bad), local_key))
    assert "'exp' is not a number" in err.message


def test_non_finite_numbers_are_refused(verifier, local, local_key, local_claims, forge) -> None:
    payload = json.dumps(local_claims()).replace('"exp": ', '"exp": Infinity, "x": ')
    err = refused(verifier, forge(local_header(local), payload, local_key))
    assert "malformed" in err.message


def test_ttl_over_max(local, clock) -> None:
    verifier = TokenVerifier(local_issuer=local, oidc=[], clock=clock)  # default 12h
    err = refused(verifier, local.issue("alice", ttl_seconds=24 * 3600))
    assert err.message == "token lifetime 24h exceeds max_token_ttl 12h"
    verify(verifier, local.issue("alice", ttl_seconds=12 * 3600))  # exactly the limit is fine
    refused(verifier, local.issue("alice", ttl_seconds=12 * 3600 + 1))

    strict = TokenVerifier(local_issuer=local, oidc=[], clock=clock, max_token_ttl=900)
    err = refused(strict, local.issue("alice", ttl_seconds=5400))
    assert err.message == "token lifetime 1h30m exceeds max_token_ttl 15m"


def test_lifetime_without_iat_uses_nbf_then_now(local, local_key, local_claims, forge, clock):
    verifier = TokenVerifier(local_issuer=local, oidc=[], clock=clock, max_token_ttl=3600)
    now = int(clock())
    # exp - nbf = 2h although exp - now is only 30 min: refused on nbf.
    claims = local_claims(iat=None, nbf=now - 5400, exp=now + 1800)
    err = refused(verifier, forge(local_header(local), claims, local_key))
    assert err.message == "token lifetime 2h exceeds max_token_ttl 1h"
    # Neither iat nor nbf: exp - now.
    claims = local_claims(iat=None, nbf=None, exp=now + 7200)
    err = refused(verifier, forge(local_header(local), claims, local_key))
    assert err.message == "token lifetime 2h exceeds max_token_ttl 1h"
    claims = local_claims(iat=None, nbf=None, exp=now + 1800)
    assert verify(verifier, forge(local_header(local), claims, local_key)).issued_at is None
    # A backdated iat does not help: exp - iat counts, not exp - now.
    claims = local_claims(iat=now - 7000, nbf=None, exp=now + 100)
    err = refused(verifier, forge(local_header(local), claims, local_key))
    assert "exceeds max_token_ttl 1h" in err.message


# --- subject ------------------------------------------------------------------------------------


def test_wrong_subject(verifier, local) -> None:
    err = refused(verifier, local.issue("bob"), user="alice")
    assert err.message == "token subject 'bob' does not match user 'alice'"
    assert err.sqlstate == "28000"


@pytest.mark.parametrize("user", ["Alice", "alice ", "alice\x00", ""])
def test_subject_match_is_exact(verifier, local, user) -> None:
    assert refused(verifier, local.issue("alice"), user=user).sqlstate == "28000"


@pytest.mark.parametrize("sub", [None, 42, "", ["alice"]])
def test_subject_must_be_a_string(verifier, local, local_key, local_claims, forge, sub) -> None:
    claims = local_claims(sub=sub) if sub is not None else local_claims(sub=None)
    if sub == "":
        claims["sub"] = ""
    err = refused(verifier, forge(local_header(local), claims, local_key))
    assert "subject" in err.message


# --- not a token --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    [
        "hunter2",
        "correct horse battery staple",
        "",
        "   ",
        "a.b.c",
        "eyJ.eyJ.sig",
        "x" * 300,
        "pa$$w0rd.with.dots",
        "Bearer abc.def.ghi",
        "ünïcödé-passwörd",
        '{"alg":"EdDSA"}',
        "md5" + "0" * 32,
        "SCRAM-SHA-256$4096:abc=$def=:ghi=",
    ],
)
def test_plain_password_is_not_a_token(verifier, password) -> None:
    err = refused(verifier, password)
    assert err.message == NOT_A_TOKEN
    assert err.sqlstate == "28P01"
    if password.strip():
        assert password not in err.message


def test_garbage_around_a_real_token(verifier, local) -> None:
    token = local.issue("alice")
    h, p, s = token.split(".")
    assert refused(verifier, token + ".").message == NOT_A_TOKEN
    assert refused(verifier, f"{h}.{p}").message == NOT_A_TOKEN
    assert refused(verifier, f"{h}!.{p}.{s}").message == NOT_A_TOKEN
    assert "signature" in refused(verifier, f"{h}.{p}.").message
    assert "malformed" in refused(verifier, f"{h}.{p}!.{s}").message
    assert "malformed" in refused(verifier, f"{h}.{p}.{s}*").message
    assert "malformed" in refused(verifier, f"{h}.{p}.{s[:-4]}").message
    # cut short yet canonical base64 (the cut above is, one time in 16): malformed too
    short = base64.urlsafe_b64encode(base64.urlsafe_b64decode(s + "==")[:-3]).rstrip(b"=")
    assert "malformed" in refused(verifier, f"{h}.{p}.{short.decode()}").message
    longer = base64.urlsafe_b64encode(base64.urlsafe_b64decode(s + "==") + b"\0").rstrip(b"=")
    assert "malformed" in refused(verifier, f"{h}.{p}.{longer.decode()}").message
    sig = bytearray(base64.urlsafe_b64decode(s + "=="))
    sig[10] ^= 1
    flipped = base64.urlsafe_b64encode(bytes(sig)).rstrip(b"=").decode()
    assert refused(verifier, f"{h}.{p}.{flipped}").message == "token signature invalid"
    short = base64.urlsafe_b64encode(bytes(sig[:-1])).rstrip(b"=").decode()
    assert "signature has 63 bytes" in refused(verifier, f"{h}.{p}.{short}").message


def test_non_string_password(verifier) -> None:
    with pytest.raises(AuthError, match="expected a JWT"):
        asyncio.run(verifier.verify(b"abc.def.ghi", user="alice"))  # type: ignore[arg-type]


def test_token_too_large(verifier, local) -> None:
    big = local.issue("alice", extra_claims={"pad": "x" * 17000})
    err = refused(verifier, big)
    assert err.message.startswith("token is too large")
    assert "16384" in err.message
    # Just under the limit is fine.
    ok = local.issue("alice", extra_claims={"pad": "x" * 11500})
    assert len(ok) <= 16384
    verify(verifier, ok)


def test_encrypted_token_refused(verifier) -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"RSA-OAEP","enc":"A256GCM"}').rstrip(b"=").decode()
    err = refused(verifier, f"{header}.a.b.c.d")
    assert "JWE" in err.message


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200) | st.from_regex(r"[A-Za-z0-9_-]{0,40}(\.[A-Za-z0-9_-]{0,40}){2}"))
def test_fuzz_only_auth_errors(verifier, text) -> None:
    with pytest.raises(AuthError) as info:
        verify(verifier, text)
    if len(text.strip()) >= 8:
        assert text.strip() not in info.value.message


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(
        st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat", "groups", "jti", "x"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text()
        | st.lists(st.text(), max_size=3),
    )
)
def test_fuzz_signed_claims_only_auth_errors(verifier, local, local_key, forge, claims) -> None:
    """Whatever a correctly signed token claims, the verifier answers or raises AuthError."""
    token = forge(local_header(local), claims, local_key)
    try:
        identity = verify(verifier, token)
    except AuthError:
        return
    assert identity.subject == "alice"
    assert claims["iss"] == "pgwarden-local"


# --- algorithm and key attacks -----------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_refused(verifier, local, local_claims, forge, alg) -> None:
    token = forge({"alg": alg, "typ": "JWT", "kid": local.kid}, local_claims())
    err = refused(verifier, token)
    assert "alg 'none'" in err.message


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512", "hs256"])
def test_hmac_with_public_key_refused(verifier, local, local_claims, forge, alg) -> None:
    """Classic algorithm confusion: HMAC keyed with the (public) verification key."""
    public = local.public_key
    secrets = [
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(local.public_jwk()).encode(),
    ]
    for secret in secrets:
        err = refused(verifier, forge(local_header(local, alg), local_claims(), secret))
        assert "refused" in err.message and "asymmetric" in err.message


def test_other_algorithms_refused_for_local_key(verifier, local, local_claims, forge) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    err = refused(verifier, forge(local_header(local, "RS256"), local_claims(), rsa_key))
    assert "does not match its signing key" in err.message
    ec_key = ec.generate_private_key(ec.SECP256R1())
    err = refused(verifier, forge(local_header(local, "ES256"), local_claims(), ec_key))
    assert "does not match its signing key" in err.message
    err = refused(verifier, forge(local_header(local, "XYZ"), local_claims(), None))
    assert "not supported" in err.message


def test_other_ed25519_key_with_same_kid(verifier, local, local_claims, forge) -> None:
    impostor = ed25519.Ed25519PrivateKey.generate()
    err = refused(verifier, forge(local_header(local), local_claims(), impostor))
    assert err.message == "token signature invalid"
    # Or without a kid at all.
    err = refused(verifier, forge({"alg": "EdDSA"}, local_claims(), impostor))
    assert err.message == "token signature invalid"


def test_unknown_kid(verifier, local, local_key, local_claims, forge) -> None:
    token = forge({"alg": "EdDSA", "kid": "someone-else"}, local_claims(), local_key)
    assert "unknown key" in refused(verifier, token).message


def test_tampered_payload(verifier, local) -> None:
    token = local.issue("alice", ["dev"])
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims["groups"] = ["dba"]
    p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refused(verifier, f"{h}.{p2}.{s}").message == "token signature invalid"


def test_tampered_header(verifier, local) -> None:
    token = local.issue("alice")
    _, p, s = token.split(".")
    h2 = base64.urlsafe_b64encode(b'{"alg":"EdDSA","kid":"%s","x":1}' % local.kid.encode())
    assert refused(verifier, f"{h2.rstrip(b'=').decode()}.{p}.{s}").message == (
        "token signature invalid"
    )


def test_duplicate_claims_refused(verifier, local, local_key, local_claims, forge) -> None:
    """{"sub":"alice","sub":"root"}: parsers disagree on which wins, so refuse it outright."""
    payload = json.dumps(local_claims())[:-1] + ', "sub": "root"}'
    assert "malformed" in refused(verifier, forge(local_header(local), payload, local_key)).message
    header = '{"alg":"EdDSA","alg":"none"}'
    h = base64.urlsafe_b64encode(header.encode()).rstrip(b"=").decode()
    token = forge(local_header(local), local_claims(), local_key)
    assert refused(verifier, h + token[token.index(".") :]).message == NOT_A_TOKEN


def test_critical_header_refused(verifier, local, local_key, local_claims, forge) -> None:
    header = {**local_header(local), "crit": ["exp"], "exp": 1}
    assert "crit" in refused(verifier, forge(header, local_claims(), local_key)).message


def test_non_string_kid_refused(verifier, local, local_key, local_claims, forge) -> None:
    header = {"alg": "EdDSA", "kid": ["a"]}
    assert "kid" in refused(verifier, forge(header, local_claims(), local_key)).message


def test_payload_must_be_an_object(verifier, local, local_key, forge) -> None:
    for payload in ('"alice"', "[1,2]", "null", "not json"):
        err = refused(verifier, forge(local_header(local), payload, local_key))
        assert err.message == "token is malformed: its payload is not a JSON object"


# --- issuer and audience ------------------------------------------------------------------------


@pytest.mark.parametrize("aud", ["other", ["other", "x"], "pgwarden ", ["PGWARDEN"]])
def test_wrong_audience(verifier, local, local_key, local_claims, forge, aud) -> None:
    err = refused(verifier, forge(local_header(local), local_claims(aud=aud), local_key))
    assert err.message.startswith("token audience ")
    assert "does not include 'pgwarden'" in err.message


def test_audience_forms(verifier, local, local_key, local_claims, forge) -> None:
    token = forge(local_header(local), local_claims(aud=["x", "pgwarden"]), local_key)
    assert verify(verifier, token).subject == "alice"
    err = refused(verifier, forge(local_header(local), local_claims(aud=None), local_key))
    assert err.message == "token has no audience (aud); expected 'pgwarden'"
    err = refused(verifier, forge(local_header(local), local_claims(aud=[1]), local_key))
    assert "not a string" in err.message


def test_untrusted_issuer(verifier, local, local_key, local_claims, forge) -> None:
    claims = local_claims(iss="https://evil.example")
    err = refused(verifier, forge(local_header(local), claims, local_key))
    assert err.message == "token issuer 'https://evil.example' is not trusted"
    assert err.sqlstate == "28P01"
    err = refused(verifier, forge(local_header(local), local_claims(iss=None), local_key))
    assert err.message == "token has no issuer (iss)"
    err = refused(verifier, forge(local_header(local), local_claims(iss=["x"]), local_key))
    assert "not a string" in err.message


def test_local_issuer_disabled(local, clock) -> None:
    verifier = TokenVerifier(local_issuer=None, oidc=[], clock=clock)
    err = refused(verifier, local.issue("alice"))
    assert err.message == "token issuer 'pgwarden-local' is not trusted"


def test_long_untrusted_issuer_is_shortened(verifier, local, local_key, local_claims, forge):
    claims = local_claims(iss="https://" + "a" * 500 + "\n\x1b[31m")
    err = refused(verifier, forge(local_header(local), claims, local_key))
    assert len(err.message) < 150
    assert "\n" not in err.message and "\x1b" not in err.message


# --- groups -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (["dba", "dev"], ("dba", "dev")),
        ([], ()),
        ("dba dev", ("dba", "dev")),
        ("dba,dev", ("dba", "dev")),
        (" dba ,  dev\tops ", ("dba", "dev", "ops")),
        ("dba", ("dba",)),
        ("", ()),
        (["dba", "dba", "dev"], ("dba", "dev")),
        ([" dba ", ""], ("dba",)),
    ],
)
def test_group_forms(verifier, local, local_key, local_claims, forge, groups, expected) -> None:
    token = forge(local_header(local), local_claims(groups=groups), local_key)
    assert verify(verifier, token).groups == expected


def test_missing_or_null_groups(verifier, local, local_key, local_claims, forge) -> None:
    assert (
        verify(verifier, forge(local_header(local), local_claims(groups=None), local_key)).groups
        == ()
    )
    claims = local_claims()
    claims["groups"] = None
    assert verify(verifier, forge(local_header(local), claims, local_key)).groups == ()


@pytest.mark.parametrize("groups", [42, True, {"dba": True}, ["dba", 1], [["dba"]]])
def test_bad_groups_refused(verifier, local, local_key, local_claims, forge, groups) -> None:
    token = forge(local_header(local), local_claims(groups=groups), local_key)
    assert "groups claim" in refused(verifier, token).message


def test_verifier_arguments_validated(local) -> None:
    with pytest.raises(ValueError):
        TokenVerifier(local_issuer=local, oidc=[], max_token_ttl=0)
    with pytest.raises(ValueError):
        TokenVerifier(local_issuer=local, oidc=[], leeway=-1)
