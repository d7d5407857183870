"""PostgreSQL client_encoding names mapped to Python codecs.

Only encodings in which every byte below 0x80 is ASCII are supported: in SJIS, BIG5, GBK,
GB18030 and their kin a multibyte character can end in a quote or backslash byte, which is how
a statement that looks harmless to the gateway can mean something else to the server.
"""

from __future__ import annotations

_CODECS = {
    "UTF8": "utf-8",
    "UNICODE": "utf-8",
    "SQL_ASCII": "utf-8",  # the server sends its bytes unconverted; ours are UTF-8 databases
    "LATIN1": "latin-1",
    "LATIN2": "iso8859-2",
    "LATIN3": "iso8859-3",
    "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9",
    "LATIN6": "iso8859-10",
    "LATIN7": "iso8859-13",
    "LATIN8": "iso8859-14",
    "LATIN9": "iso8859-15",
    "LATIN10": "iso8859-16",
    "WIN1250": "cp1250",
    "WIN1251": "cp1251",
    "WIN1252": "cp1252",
    "WIN1253": "cp1253",
    "WIN1254": "cp1254",
    "WIN1255": "cp1255",
    "WIN1256": "cp1256",
    "WIN1257": "cp1257",
    "WIN1258": "cp1258",
    "KOI8R": "koi8-r",
    "KOI8U": "koi8-u",
    # No EUC_JP: Python's euc-jp decodes the JIS X 0212 character 0x8F 0xA2 0xB7 to an ASCII
    # "~" (where PostgreSQL sees one three-byte character) and encodes U+00A5 / U+203E as "\\"
    # and "~", so the gateway and the server would read different SQL from the same bytes.
    "EUC_KR": "euc-kr",
    "EUC_CN": "gb2312",
}


def python_codec(pg_name: str) -> str | None:
    """The Python codec for a PostgreSQL encoding name, or None if pgwarden refuses it."""
    key = _clean(pg_name)
    for name, codec in _CODECS.items():
        if _clean(name) == key:
            return codec
    return None


def _clean(name: str) -> str:
    # PostgreSQL compares encoding names with everything but letters and digits removed.
    return "".join(ch for ch in name.upper() if ch.isalnum())
