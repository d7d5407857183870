"""How masking treats each PostgreSQL type: which replacements keep a value valid.

RowDescription reports the base type of a domain, so domains over text are text here.
Type OIDs are PostgreSQL's fixed built-in OIDs (``pg_type.dat``); any other OID (composite
row types, enums, extension types such as citext or hstore, arrays of text) is GENERIC.
"""

from __future__ import annotations

from typing import Final

#: text-like: text format and binary format are both the string's bytes
TEXT: Final = 0
#: json (text) and jsonb/jsonpath (binary: a version byte, then the text)
JSON: Final = 1
#: integers: int2, int4, int8, oid
INT: Final = 2
#: numeric
NUMERIC: Final = 3
#: float4, float8
FLOAT: Final = 4
#: arrays of numbers (text format ``{1,2,3}``)
NUMARR: Final = 5
#: bytea (text format ``\x...`` hex, binary format the raw bytes)
BYTEA: Final = 6
#: structured scalars whose text cannot take a masking character and stay valid
OPAQUE: Final = 7
#: anything else: composites, records, enums, arrays of text, extension types
GENERIC: Final = 8

KIND_NAMES: Final = (
    "text", "json", "int", "numeric", "float", "numarr", "bytea", "opaque", "generic",
)  # fmt: skip

_KINDS: dict[int, int] = {
    25: TEXT,  # text
    1043: TEXT,  # varchar
    1042: TEXT,  # bpchar
    19: TEXT,  # name
    705: TEXT,  # unknown
    18: TEXT,  # "char"
    142: TEXT,  # xml
    114: JSON,  # json
    3802: JSON,  # jsonb
    4072: JSON,  # jsonpath
    20: INT,  # int8
    21: INT,  # int2
    23: INT,  # int4
    26: INT,  # oid
    1700: NUMERIC,
    700: FLOAT,  # float4
    701: FLOAT,  # float8
    1005: NUMARR,  # int2[]
    1007: NUMARR,  # int4[]
    1016: NUMARR,  # int8[]
    1021: NUMARR,  # float4[]
    1022: NUMARR,  # float8[]
    1231: NUMARR,  # numeric[]
    1028: NUMARR,  # oid[]
    17: BYTEA,
    16: OPAQUE,  # bool
    1082: OPAQUE,  # date
    1083: OPAQUE,  # time
    1114: OPAQUE,  # timestamp
    1184: OPAQUE,  # timestamptz
    1186: OPAQUE,  # interval
    1266: OPAQUE,  # timetz
    2950: OPAQUE,  # uuid
    869: OPAQUE,  # inet
    650: OPAQUE,  # cidr
    829: OPAQUE,  # macaddr
    774: OPAQUE,  # macaddr8
    790: OPAQUE,  # money
    600: OPAQUE,  # point
    601: OPAQUE,  # lseg
    602: OPAQUE,  # path
    603: OPAQUE,  # box
    604: OPAQUE,  # polygon
    628: OPAQUE,  # line
    718: OPAQUE,  # circle
    1560: OPAQUE,  # bit
    1562: OPAQUE,  # varbit
    3220: OPAQUE,  # pg_lsn
    3904: OPAQUE,  # int4range
    3906: OPAQUE,  # numrange
    3908: OPAQUE,  # tsrange
    3910: OPAQUE,  # tstzrange
    3912: OPAQUE,  # daterange
    3926: OPAQUE,  # int8range
}

#: binary widths of the INT types, and whether they are unsigned
INT_BINARY: Final[dict[int, tuple[int, bool]]] = {
    21: (2, False),
    23: (4, False),
    20: (8, False),
    26: (4, True),
}

#: JSON types whose binary form starts with a version byte (1)
VERSIONED_JSON: Final = frozenset({3802, 4072})


def kind_of(type_oid: int) -> int:
    """The masking kind of a type OID (GENERIC for anything not built in)."""
    return _KINDS.get(type_oid, GENERIC)
