"""client_encoding names -> Python codecs, and the ASCII-safety rule the gateway relies on:
in every supported encoding, the ASCII characters the gateway decodes are exactly the ASCII
bytes the server sees (so quotes, backslashes and operators cannot hide inside a multibyte
character on one side only)."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.protocol.encodings import python_codec

# Every server/client encoding PostgreSQL knows (src/common/encnames.c).
PG_ENCODINGS = [
    "SQL_ASCII", "UTF8", "EUC_JP", "EUC_CN", "EUC_KR", "EUC_TW", "EUC_JIS_2004", "MULE_INTERNAL",
    "LATIN1", "LATIN2", "LATIN3", "LATIN4", "LATIN5", "LATIN6", "LATIN7", "LATIN8", "LATIN9",
    "LATIN10", "WIN1256", "WIN1258", "WIN866", "WIN874", "KOI8R", "WIN1251", "WIN1252",
    "ISO_8859_5", "ISO_8859_6", "ISO_8859_7", "ISO_8859_8", "WIN1250", "WIN1253", "WIN1254",
    "WIN1255", "WIN1257", "KOI8U", "SJIS", "BIG5", "GBK", "UHC", "GB18030", "JOHAB",
    "SHIFT_JIS_2004",
]  # fmt: skip
SUPPORTED = [(name, c) for name in PG_ENCODINGS if (c := python_codec(name)) is not None]
MULTIBYTE = {"utf-8", "euc-kr", "gb2312", "euc-jp"}


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("UTF8", "utf-8"),
        ("utf8", "utf-8"),
        ("utf-8", "utf-8"),
        ("Utf_8", "utf-8"),
        ("UNICODE", "utf-8"),
        ("SQL_ASCII", "utf-8"),
        ("LATIN1", "latin-1"),
        ("latin1", "latin-1"),
        ("Latin-1", "latin-1"),
        ("LATIN9", "iso8859-15"),
        ("win1252", "cp1252"),
        ("WIN-1251", "cp1251"),
        ("KOI8-R", "koi8-r"),
        ("EUC_KR", "euc-kr"),
        ("euc-cn", "gb2312"),
    ],
)
def test_python_codec_normalizes_names(name: str, codec: str) -> None:
    assert python_codec(name) == codec


@pytest.mark.parametrize(
    "name",
    ["SJIS", "BIG5", "GBK", "GB18030", "UHC", "JOHAB", "SHIFT_JIS_2004", "MULE_INTERNAL", "", "x"],
)
def test_encodings_with_ascii_trail_bytes_are_refused(name: str) -> None:
    assert python_codec(name) is None


def test_every_supported_codec_exists() -> None:
    assert len(SUPPORTED) >= 20
    for _, codec in SUPPORTED:
        codecs.lookup(codec)


def _ascii_projection_matches(data: bytes, codec: str) -> bool:
    text = data.decode(codec, "surrogateescape")
    return [c for c in text if c < "\x80"] == [chr(b) for b in data if b < 0x80]


@pytest.mark.parametrize(("name", "codec"), SUPPORTED, ids=[n for n, _ in SUPPORTED])
def test_decoding_never_invents_or_hides_ascii(name: str, codec: str) -> None:
    """Exhaustive over 1- and 2-byte strings (and EUC's 3-byte SS2/SS3 forms). EUC_JP used to
    be supported: Python decodes b"\\x8f\\xa2\\xb7" to "~", PostgreSQL to one JIS X 0212
    character, so the gateway and the server would parse different SQL."""
    for b in range(256):
        assert _ascii_projection_matches(bytes([b]), codec), (name, b)
    if codec not in MULTIBYTE:
        return  # single-byte codecs decode byte by byte
    bad = [
        bytes([a, b])
        for a in range(0x80, 0x100)
        for b in range(256)
        if not _ascii_projection_matches(bytes([a, b]), codec)
    ]
    hi = range(0xA1, 0xFF)
    bad += [
        bytes([ss, a, b])
        for ss in (0x8E, 0x8F)
        for a in hi
        for b in (*hi, 0x27, 0x5C, 0x7E)
        if not _ascii_projection_matches(bytes([ss, a, b]), codec)
    ]
    assert bad == [], (name, bad[:5])


@pytest.mark.parametrize(("name", "codec"), SUPPORTED, ids=[n for n, _ in SUPPORTED])
def test_encoding_non_ascii_never_produces_ascii_bytes(name: str, codec: str) -> None:
    """Rebuilt messages (rewrites) must not turn a non-ASCII character into a quote, a
    backslash or an operator (Python's euc-jp encodes U+00A5 as a backslash)."""
    non_ascii = "".join(chr(cp) for cp in range(0x80, 0x30000) if not 0xD800 <= cp < 0xE000)
    encoded = non_ascii.encode(codec, "ignore")
    assert min(encoded) >= 0x80, name


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([c for _, c in SUPPORTED]), st.binary(max_size=64))
def test_random_bytes_keep_their_ascii_in_every_supported_codec(codec: str, data: bytes) -> None:
    assert _ascii_projection_matches(data, codec)
    assert data.decode(codec, "surrogateescape").encode(codec, "surrogateescape") == data
