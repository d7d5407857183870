"""Golden wire bytes for every message type, written by hand from the PostgreSQL protocol docs
(https://www.postgresql.org/docs/current/protocol-message-formats.html).

Each case checks three things: ``build(...)`` produces exactly the bytes, decoding the bytes
gives the right type with the right fields, and the decoded message keeps ``raw`` byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pgwarden.protocol import MessageReader, ProtocolError
from pgwarden.protocol.errors import Side
from pgwarden.protocol.messages import (
    AUTH_CLEARTEXT,
    AUTH_GSS,
    AUTH_GSS_CONTINUE,
    AUTH_MD5,
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    PROTOCOL_V3,
    SSL_REQUEST_CODE,
    Authentication,
    AuthResponse,
    BackendKeyData,
    Bind,
    BindComplete,
    CancelRequest,
    Close,
    CloseComplete,
    Column,
    CommandComplete,
    CopyData,
    CopyDone,
    CopyFail,
    CopyResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    Flush,
    FunctionCall,
    FunctionCallResponse,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    Parse,
    ParseComplete,
    PortalSuspended,
    Query,
    ReadyForQuery,
    RowDescription,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
    cstr,
    decode,
    decode_startup,
    frame,
)


@dataclass
class Golden:
    id: str
    side: Side | None  # None: untyped start-up packet
    wire: bytes
    type: type[Message]
    fields: dict[str, Any] = field(default_factory=dict)
    # how to build it (called inside the test, so that a failing build() fails one test);
    # None: the codec has no constructor for this message
    built: Callable[[], Message] | None = None
    encoding: str = "utf-8"


def _g(*args: Any, **kwargs: Any) -> Any:
    return pytest.param(Golden(*args, **kwargs), id=args[0])


FRONTEND = [
    _g(
        "StartupMessage",
        None,
        b"\x00\x00\x00\x22"  # length 34, counting itself
        b"\x00\x03\x00\x00"  # protocol 3.0
        b"user\x00alice\x00database\x00shop\x00\x00",
        StartupMessage,
        {"version": 196608, "params": {"user": "alice", "database": "shop"}},
        lambda: StartupMessage.build({"user": "alice", "database": "shop"}),
    ),
    _g(
        "StartupMessage-3.2-empty-value",
        None,
        b"\x00\x00\x00\x1b\x00\x03\x00\x02user\x00bob\x00options\x00\x00\x00",
        StartupMessage,
        {"version": 0x00030002, "params": {"user": "bob", "options": ""}},
        lambda: StartupMessage.build({"user": "bob", "options": ""}, version=0x00030002),
    ),
    _g(
        "SSLRequest",
        None,
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        SSLRequest,
        {},
        SSLRequest.build,
    ),
    _g(
        "GSSENCRequest",
        None,
        b"\x00\x00\x00\x08\x04\xd2\x16\x30",
        GSSENCRequest,
        {},
        GSSENCRequest.build,
    ),
    _g(
        "CancelRequest",
        None,
        b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x04\xd2\xde\xad\xbe\xef",
        CancelRequest,
        {"pid": 1234, "secret": b"\xde\xad\xbe\xef"},
        lambda: CancelRequest.build(1234, b"\xde\xad\xbe\xef"),
    ),
    _g(
        "CancelRequest-long-key",  # protocol 3.2 allows keys up to 256 bytes
        None,
        b"\x00\x00\x00\x2c\x04\xd2\x16\x2e\x00\x01\x00\x00" + bytes(range(32)),
        CancelRequest,
        {"pid": 65536, "secret": bytes(range(32))},
        lambda: CancelRequest.build(65536, bytes(range(32))),
    ),
    _g(
        "Query",
        "client",
        b"Q\x00\x00\x00\rSELECT 1\x00",
        Query,
        {"sql": "SELECT 1"},
        lambda: Query.build("SELECT 1"),
    ),
    _g(
        "Query-utf8",
        "client",
        b"Q\x00\x00\x00\x0c'\xc3\xa9\xe2\x9c\x93'\x00",
        Query,
        {"sql": "'é✓'"},
        lambda: Query.build("'é✓'"),
    ),
    _g(
        "Query-latin1",
        "client",
        b"Q\x00\x00\x00\x08'\xe9'\x00",
        Query,
        {"sql": "'é'"},
        lambda: Query.build("'é'", "latin-1"),
        encoding="latin-1",
    ),
    _g(
        "Parse-with-param-types",
        "client",
        b"P\x00\x00\x00\x27"
        b"stmt1\x00"
        b"SELECT $1::int, $2\x00"
        b"\x00\x02"  # two parameter types
        b"\x00\x00\x00\x17"  # int4
        b"\x00\x00\x00\x19",  # text
        Parse,
        {"name": "stmt1", "sql": "SELECT $1::int, $2", "param_types": (23, 25)},
        lambda: Parse.build("stmt1", "SELECT $1::int, $2", [23, 25]),
    ),
    _g(
        "Parse-unnamed-no-types",
        "client",
        b"P\x00\x00\x00\x10\x00SELECT 1\x00\x00\x00",
        Parse,
        {"name": "", "sql": "SELECT 1", "param_types": ()},
        lambda: Parse.build("", "SELECT 1"),
    ),
    _g(
        "Bind-mixed-formats-and-NULL",
        "client",
        b"B\x00\x00\x00\x2c"
        b"p\x00stmt1\x00"
        b"\x00\x03\x00\x00\x00\x01\x00\x00"  # 3 parameter formats: text, binary, text
        b"\x00\x03"  # 3 parameters
        b"\x00\x00\x00\x0242"  # "42"
        b"\x00\x00\x00\x04\x00\x00\x00\x07"  # int4 7, binary
        b"\xff\xff\xff\xff"  # NULL
        b"\x00\x01\x00\x01",  # 1 result format: binary for all columns
        Bind,
        {
            "portal": "p",
            "statement": "stmt1",
            "param_formats": (0, 1, 0),
            "params": (b"42", b"\x00\x00\x00\x07", None),
            "result_formats": (1,),
        },
        lambda: Bind.build("p", "stmt1", [b"42", b"\x00\x00\x00\x07", None], [0, 1, 0], [1]),
    ),
    _g(
        "Bind-empty",
        "client",
        b"B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00",
        Bind,
        {"portal": "", "statement": "", "param_formats": (), "params": (), "result_formats": ()},
        lambda: Bind.build("", ""),
    ),
    _g(
        "Bind-empty-string-param",
        "client",
        b"B\x00\x00\x00\x13\x00s\x00\x00\x01\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00",
        Bind,
        {"statement": "s", "param_formats": (1,), "params": (b"",), "result_formats": ()},
        lambda: Bind.build("", "s", [b""], [1]),
    ),
    _g(
        "Execute",
        "client",
        b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00",
        Execute,
        {"portal": "", "max_rows": 0},
        Execute.build,
    ),
    _g(
        "Execute-row-limit",
        "client",
        b"E\x00\x00\x00\x0ap\x00\x00\x00\x00\x64",
        Execute,
        {"portal": "p", "max_rows": 100},
        lambda: Execute.build("p", 100),
    ),
    _g(
        "Describe-S",
        "client",
        b"D\x00\x00\x00\x0bSstmt1\x00",
        Describe,
        {"kind": b"S", "name": "stmt1"},
        lambda: Describe.build(b"S", "stmt1"),
    ),
    _g(
        "Describe-P",
        "client",
        b"D\x00\x00\x00\x06P\x00",
        Describe,
        {"kind": b"P", "name": ""},
        lambda: Describe.build(b"P"),
    ),
    _g(
        "Close-S",
        "client",
        b"C\x00\x00\x00\x0bSstmt1\x00",
        Close,
        {"kind": b"S", "name": "stmt1"},
        lambda: Close.build(b"S", "stmt1"),
    ),
    _g(
        "Close-P",
        "client",
        b"C\x00\x00\x00\x07Pp\x00",
        Close,
        {"kind": b"P", "name": "p"},
        lambda: Close.build(b"P", "p"),
    ),
    _g("Sync", "client", b"S\x00\x00\x00\x04", Sync, {}, Sync.build),
    _g("Flush", "client", b"H\x00\x00\x00\x04", Flush, {}, Flush.build),
    _g("Terminate", "client", b"X\x00\x00\x00\x04", Terminate, {}, Terminate.build),
    _g(
        "CopyData-client",
        "client",
        b"d\x00\x00\x00\x0a1\tone\n",
        CopyData,
        {"data": b"1\tone\n"},
        lambda: CopyData.build(b"1\tone\n"),
    ),
    _g(
        "CopyData-empty",
        "client",
        b"d\x00\x00\x00\x04",
        CopyData,
        {"data": b""},
        lambda: CopyData.build(b""),
    ),
    _g("CopyDone-client", "client", b"c\x00\x00\x00\x04", CopyDone, {}, CopyDone.build),
    _g(
        "CopyFail",
        "client",
        b"f\x00\x00\x00\x09oops\x00",
        CopyFail,
        {"reason": "oops"},
        lambda: CopyFail.build("oops"),
    ),
    _g(
        "FunctionCall",
        "client",
        b"F\x00\x00\x00\x16"
        b"\x00\x00\x05\x75"  # function OID 1397 (int4abs)
        b"\x00\x01\x00\x00"  # one argument format: text
        b"\x00\x01\x00\x00\x00\x02-7"  # one argument, "-7"
        b"\x00\x00",  # result format text
        FunctionCall,
        {"function_oid": 1397},
    ),
    _g(
        "FunctionCall-high-oid",
        "client",
        b"F\x00\x00\x00\x0e\xff\xff\xff\xfe\x00\x00\x00\x00\x00\x00",
        FunctionCall,
        {"function_oid": 0xFFFFFFFE},
    ),
    _g(
        "PasswordMessage",
        "client",
        b"p\x00\x00\x00\x0bsecret\x00",
        AuthResponse,
        {"data": b"secret\x00"},
        lambda: AuthResponse.build(cstr("secret")),
    ),
    _g(
        "SASLInitialResponse",
        "client",
        b"p\x00\x00\x00\x21SCRAM-SHA-256\x00\x00\x00\x00\x0bn,,n=,r=abc",
        AuthResponse,
        {"data": b"SCRAM-SHA-256\x00\x00\x00\x00\x0bn,,n=,r=abc"},
        lambda: AuthResponse.sasl_initial("SCRAM-SHA-256", b"n,,n=,r=abc"),
    ),
    _g(
        "SASLResponse",
        "client",
        b"p\x00\x00\x00\x0ec=biws,r=x",
        AuthResponse,
        {"data": b"c=biws,r=x"},
        lambda: AuthResponse.build(b"c=biws,r=x"),
    ),
]

BACKEND = [
    _g(
        "AuthenticationOk",
        "server",
        b"R\x00\x00\x00\x08\x00\x00\x00\x00",
        Authentication,
        {"kind": AUTH_OK, "data": b"", "mechanisms": ()},
        lambda: Authentication.build(AUTH_OK),
    ),
    _g(
        "AuthenticationCleartextPassword",
        "server",
        b"R\x00\x00\x00\x08\x00\x00\x00\x03",
        Authentication,
        {"kind": AUTH_CLEARTEXT, "data": b""},
        lambda: Authentication.build(AUTH_CLEARTEXT),
    ),
    _g(
        "AuthenticationMD5Password",
        "server",
        b"R\x00\x00\x00\x0c\x00\x00\x00\x05\x01\x02\x03\x04",
        Authentication,
        {"kind": AUTH_MD5, "data": b"\x01\x02\x03\x04"},
        lambda: Authentication.build(AUTH_MD5, b"\x01\x02\x03\x04"),
    ),
    _g(
        "AuthenticationGSS",
        "server",
        b"R\x00\x00\x00\x08\x00\x00\x00\x07",
        Authentication,
        {"kind": AUTH_GSS, "data": b""},
        lambda: Authentication.build(AUTH_GSS),
    ),
    _g(
        "AuthenticationGSSContinue",
        "server",
        b"R\x00\x00\x00\x0b\x00\x00\x00\x08\x60\x81\x00",
        Authentication,
        {"kind": AUTH_GSS_CONTINUE, "data": b"\x60\x81\x00"},
        lambda: Authentication.build(AUTH_GSS_CONTINUE, b"\x60\x81\x00"),
    ),
    _g(
        "AuthenticationSASL",
        "server",
        b"R\x00\x00\x00\x2a\x00\x00\x00\x0aSCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00",
        Authentication,
        {
            "kind": AUTH_SASL,
            "data": b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00",
            "mechanisms": ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"),
        },
        lambda: Authentication.build(AUTH_SASL, b"SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00"),
    ),
    _g(
        "AuthenticationSASLContinue",
        "server",
        b"R\x00\x00\x00\x1f\x00\x00\x00\x0br=abc,s=c2FsdA==,i=4096",
        Authentication,
        {"kind": AUTH_SASL_CONTINUE, "data": b"r=abc,s=c2FsdA==,i=4096", "mechanisms": ()},
        lambda: Authentication.build(AUTH_SASL_CONTINUE, b"r=abc,s=c2FsdA==,i=4096"),
    ),
    _g(
        "AuthenticationSASLFinal",
        "server",
        b"R\x00\x00\x00\x16\x00\x00\x00\x0cv=dmVyaWZpZXI=",
        Authentication,
        {"kind": AUTH_SASL_FINAL, "data": b"v=dmVyaWZpZXI="},
        lambda: Authentication.build(AUTH_SASL_FINAL, b"v=dmVyaWZpZXI="),
    ),
    _g(
        "BackendKeyData",
        "server",
        b"K\x00\x00\x00\x0c\x00\x00\x04\xd2\xde\xad\xbe\xef",
        BackendKeyData,
        {"pid": 1234, "secret": b"\xde\xad\xbe\xef"},
        lambda: BackendKeyData.build(1234, b"\xde\xad\xbe\xef"),
    ),
    _g("ParseComplete", "server", b"1\x00\x00\x00\x04", ParseComplete, {}, ParseComplete.build),
    _g("BindComplete", "server", b"2\x00\x00\x00\x04", BindComplete, {}, BindComplete.build),
    _g("CloseComplete", "server", b"3\x00\x00\x00\x04", CloseComplete, {}, CloseComplete.build),
    _g(
        "CommandComplete",
        "server",
        b"C\x00\x00\x00\x0dSELECT 1\x00",
        CommandComplete,
        {"tag": "SELECT 1"},
        lambda: CommandComplete.build("SELECT 1"),
    ),
    _g(
        "CommandComplete-insert",
        "server",
        b"C\x00\x00\x00\x0fINSERT 0 1\x00",
        CommandComplete,
        {"tag": "INSERT 0 1"},
        lambda: CommandComplete.build("INSERT 0 1"),
    ),
    _g(
        "CopyInResponse",
        "server",
        b"G\x00\x00\x00\x0d\x00\x00\x03\x00\x00\x00\x00\x00\x00",
        CopyResponse,
        {"direction": b"G", "overall_format": 0, "column_formats": (0, 0, 0)},
    ),
    _g(
        "CopyOutResponse",
        "server",
        b"H\x00\x00\x00\x0b\x01\x00\x02\x00\x01\x00\x01",
        CopyResponse,
        {"direction": b"H", "overall_format": 1, "column_formats": (1, 1)},
    ),
    _g(
        "CopyBothResponse",
        "server",
        b"W\x00\x00\x00\x07\x00\x00\x00",
        CopyResponse,
        {"direction": b"W", "overall_format": 0, "column_formats": ()},
    ),
    _g(
        "CopyData-server",
        "server",
        b"d\x00\x00\x00\x0a1\tone\n",
        CopyData,
        {"data": b"1\tone\n"},
        lambda: CopyData.build(b"1\tone\n"),
    ),
    _g("CopyDone-server", "server", b"c\x00\x00\x00\x04", CopyDone, {}, CopyDone.build),
    _g(
        "DataRow-NULL-and-empty",
        "server",
        b"D\x00\x00\x00\x14"
        b"\x00\x03"  # three columns
        b"\x00\x00\x00\x0242"  # "42"
        b"\xff\xff\xff\xff"  # NULL
        b"\x00\x00\x00\x00",  # "" (empty, not NULL)
        DataRow,
        {"values": (b"42", None, b"")},
        lambda: DataRow.build([b"42", None, b""]),
    ),
    _g(
        "DataRow-no-columns",
        "server",
        b"D\x00\x00\x00\x06\x00\x00",
        DataRow,
        {"values": ()},
        lambda: DataRow.build([]),
    ),
    _g(
        "EmptyQueryResponse",
        "server",
        b"I\x00\x00\x00\x04",
        EmptyQueryResponse,
        {},
        EmptyQueryResponse.build,
    ),
    _g(
        "ErrorResponse",
        "server",
        b"E\x00\x00\x00\x2bSERROR\x00VERROR\x00C42601\x00Msyntax error\x00P1\x00\x00",
        ErrorResponse,
        {
            "fields": {"S": "ERROR", "V": "ERROR", "C": "42601", "M": "syntax error", "P": "1"},
            "sqlstate": "42601",
            "severity": "ERROR",
            "message": "syntax error",
        },
        lambda: ErrorResponse.build("42601", "syntax error", position="1"),
    ),
    _g(
        "ErrorResponse-FATAL-detail-hint",
        "server",
        b"E\x00\x00\x00\x35"
        b"SFATAL\x00C28P01\x00Mno\x00Dd\x00Hh\x00Fauth.c\x00L1\x00Rauth_failed\x00\x00",
        ErrorResponse,
        {
            "fields": {
                "S": "FATAL",
                "C": "28P01",
                "M": "no",
                "D": "d",
                "H": "h",
                "F": "auth.c",
                "L": "1",
                "R": "auth_failed",
            },
            "severity": "FATAL",
        },
        lambda: ErrorResponse.from_fields(
            {
                "S": "FATAL",
                "C": "28P01",
                "M": "no",
                "D": "d",
                "H": "h",
                "F": "auth.c",
                "L": "1",
                "R": "auth_failed",
            }
        ),
    ),
    _g(
        "NoticeResponse",
        "server",
        b"N\x00\x00\x00\x23SNOTICE\x00VNOTICE\x00C00000\x00Mhello\x00\x00",
        NoticeResponse,
        {
            "fields": {"S": "NOTICE", "V": "NOTICE", "C": "00000", "M": "hello"},
            "sqlstate": "00000",
            "message": "hello",
        },
        lambda: NoticeResponse.build("hello"),
    ),
    _g(
        "NoticeResponse-empty",
        "server",
        b"N\x00\x00\x00\x05\x00",
        NoticeResponse,
        {"fields": {}, "sqlstate": "", "severity": "", "message": ""},
        lambda: NoticeResponse.from_fields({}),
    ),
    _g(
        "FunctionCallResponse",
        "server",
        b"V\x00\x00\x00\x09\x00\x00\x00\x017",
        FunctionCallResponse,
    ),
    _g(
        "FunctionCallResponse-NULL",
        "server",
        b"V\x00\x00\x00\x08\xff\xff\xff\xff",
        FunctionCallResponse,
    ),
    _g(
        "NegotiateProtocolVersion",
        "server",
        b"v\x00\x00\x00\x15\x00\x00\x00\x00\x00\x00\x00\x01_pq_.foo\x00",
        NegotiateProtocolVersion,
        {"newest_minor": 0, "unrecognized": ("_pq_.foo",)},
        lambda: NegotiateProtocolVersion.build(0, ["_pq_.foo"]),
    ),
    _g("NoData", "server", b"n\x00\x00\x00\x04", NoData, {}, NoData.build),
    _g(
        "NotificationResponse",
        "server",
        b"A\x00\x00\x00\x10\x00\x00\x04\xd2chan\x00hi\x00",
        NotificationResponse,
        {"pid": 1234, "channel": "chan", "payload": "hi"},
        lambda: NotificationResponse.build(1234, "chan", "hi"),
    ),
    _g(
        "ParameterDescription",
        "server",
        b"t\x00\x00\x00\x0e\x00\x02\x00\x00\x00\x17\x00\x00\x00\x19",
        ParameterDescription,
        {"type_oids": (23, 25)},
    ),
    _g(
        "ParameterDescription-none",
        "server",
        b"t\x00\x00\x00\x06\x00\x00",
        ParameterDescription,
        {"type_oids": ()},
    ),
    _g(
        "ParameterStatus",
        "server",
        b"S\x00\x00\x00\x19client_encoding\x00UTF8\x00",
        ParameterStatus,
        {"name": "client_encoding", "value": "UTF8"},
        lambda: ParameterStatus.build("client_encoding", "UTF8"),
    ),
    _g(
        "PortalSuspended",
        "server",
        b"s\x00\x00\x00\x04",
        PortalSuspended,
        {},
        PortalSuspended.build,
    ),
    _g(
        "ReadyForQuery-I",
        "server",
        b"Z\x00\x00\x00\x05I",
        ReadyForQuery,
        {"status": b"I"},
        lambda: ReadyForQuery.build(b"I"),
    ),
    _g(
        "ReadyForQuery-T",
        "server",
        b"Z\x00\x00\x00\x05T",
        ReadyForQuery,
        {"status": b"T"},
        lambda: ReadyForQuery.build(b"T"),
    ),
    _g(
        "ReadyForQuery-E",
        "server",
        b"Z\x00\x00\x00\x05E",
        ReadyForQuery,
        {"status": b"E"},
        lambda: ReadyForQuery.build(b"E"),
    ),
    _g(
        "RowDescription",
        "server",
        b"T\x00\x00\x00\x32"
        b"\x00\x02"  # two columns
        b"id\x00\x00\x00\x40\x00\x00\x01\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00"
        b"name\x00\x00\x00\x40\x00\x00\x02\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00",
        RowDescription,
        {
            "columns": (
                Column("id", 16384, 1, 23, 4, -1, 0),
                Column("name", 16384, 2, 25, -1, -1, 0),
            )
        },
        lambda: RowDescription.build(
            [Column("id", 16384, 1, 23, 4, -1, 0), Column("name", 16384, 2, 25, -1, -1, 0)]
        ),
    ),
    _g(
        "RowDescription-binary-high-oid",
        "server",
        b"T\x00\x00\x00\x1a\x00\x01"
        b"n\x00\x00\x00\x00\x00\xff\xfd\xc0\x00\x00\x00\x00\x04\x00\x00\x00\x08\x00\x01",
        RowDescription,
        {"columns": (Column("n", 0, -3, 3221225472, 4, 8, 1),)},
        lambda: RowDescription.build([Column("n", 0, -3, 3221225472, 4, 8, 1)]),
    ),
]


def _decode(case: Golden, wire: bytes) -> Message:
    if case.side is None:
        return decode_startup(wire, case.encoding)
    return decode(case.side, wire, case.encoding)


@pytest.mark.parametrize("case", FRONTEND + BACKEND)
def test_decode_golden(case: Golden) -> None:
    msg = _decode(case, case.wire)
    assert type(msg) is case.type
    assert msg.raw == case.wire
    assert type(msg.raw) is bytes
    for name, expected in case.fields.items():
        value = getattr(msg, name)
        if callable(value):
            value = value()
        assert value == expected, name


@pytest.mark.parametrize("case", [c for c in FRONTEND + BACKEND if c.values[0].built is not None])
def test_build_golden(case: Golden) -> None:
    assert case.built is not None
    built = case.built()
    assert built.raw == case.wire
    assert built == _decode(case, case.wire)  # same type, same fields, same raw


@pytest.mark.parametrize("case", FRONTEND + BACKEND)
def test_reader_golden(case: Golden) -> None:
    """The framing reader hands back the same message, whole and one byte at a time."""
    for chunks in ([case.wire], [case.wire[i : i + 1] for i in range(len(case.wire))]):
        reader = MessageReader(
            case.side or "client", startup=case.side is None, encoding=case.encoding
        )
        got = []
        for chunk in chunks:
            reader.feed(chunk)
            while (msg := reader.next()) is not None:
                got.append(msg)
        assert got == [_decode(case, case.wire)]
        assert reader.buffered == 0


def test_body_properties() -> None:
    assert Query.build("SELECT 1").body == b"SELECT 1\x00"
    assert StartupMessage.build({"user": "a"}).body == b"\x00\x03\x00\x00user\x00a\x00\x00"


def test_startup_codes_match_the_docs() -> None:
    assert PROTOCOL_V3 == (3 << 16) == 196608
    assert SSL_REQUEST_CODE == (1234 << 16) | 5679
    assert GSSENC_REQUEST_CODE == (1234 << 16) | 5680
    assert CANCEL_REQUEST_CODE == (1234 << 16) | 5678


# Same type byte, different message depending on who sent it.
@pytest.mark.parametrize(
    ("wire", "client_type", "server_type"),
    [
        (b"D\x00\x00\x00\x06P\x00", Describe, None),
        (b"D\x00\x00\x00\x06\x00\x00", None, DataRow),
        (b"C\x00\x00\x00\x07Pp\x00", Close, CommandComplete),
        (b"S\x00\x00\x00\x04", Sync, None),
        (b"S\x00\x00\x00\x07a\x00\x00", None, ParameterStatus),
        (b"H\x00\x00\x00\x04", Flush, None),
        (b"H\x00\x00\x00\x07\x00\x00\x00", None, CopyResponse),
        (b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00", Execute, None),
        (b"E\x00\x00\x00\x05\x00", None, ErrorResponse),
        (b"d\x00\x00\x00\x05x", CopyData, CopyData),
        (b"c\x00\x00\x00\x04", CopyDone, CopyDone),
        (b"Q\x00\x00\x00\x05\x00", Query, None),
        (b"Z\x00\x00\x00\x05I", None, ReadyForQuery),
        (b"p\x00\x00\x00\x05\x00", AuthResponse, None),
        (b"R\x00\x00\x00\x08\x00\x00\x00\x00", None, Authentication),
    ],
)
def test_type_byte_depends_on_side(
    wire: bytes, client_type: type[Message] | None, server_type: type[Message] | None
) -> None:
    for side, expected in (("client", client_type), ("server", server_type)):
        if expected is None:
            with pytest.raises(ProtocolError) as info:
                decode(side, wire)  # type: ignore[arg-type]
            assert info.value.side == side
        else:
            msg = decode(side, wire)  # type: ignore[arg-type]
            assert type(msg) is expected
            assert msg.raw == wire


def test_frame_and_cstr() -> None:
    assert frame(b"S") == b"S\x00\x00\x00\x04"
    assert frame(b"Q", b"x\x00") == b"Q\x00\x00\x00\x06x\x00"
    assert cstr("é") == b"\xc3\xa9\x00"
    assert cstr("é", "latin-1") == b"\xe9\x00"
    assert cstr(b"raw") == b"raw\x00"
    with pytest.raises(ValueError, match="NUL"):
        cstr("a\x00b")
    with pytest.raises(ValueError, match="NUL"):
        Query.build("SELECT 1\x00; DROP TABLE x")


def test_password_message() -> None:
    msg = decode("client", b"p\x00\x00\x00\x0bsecret\x00")
    assert isinstance(msg, AuthResponse)
    assert msg.password() == b"secret"
    for bad in (b"p\x00\x00\x00\x0asecret", b"p\x00\x00\x00\x0bsec\x00et", b"p\x00\x00\x00\x04"):
        with pytest.raises(ProtocolError) as info:
            decode("client", bad).password()  # type: ignore[attr-defined]
        assert info.value.side == "client"


def test_bind_param_format_rule() -> None:
    """Zero format codes: all text; one: applies to all; N: one per parameter."""
    assert Bind.build("", "", [b"a", b"b"]).param_format(1) == 0
    assert Bind.build("", "", [b"a", b"b"], [1]).param_format(0) == 1
    assert Bind.build("", "", [b"a", b"b"], [1]).param_format(1) == 1
    both = Bind.build("", "", [b"a", b"b"], [1, 0])
    assert (both.param_format(0), both.param_format(1)) == (1, 0)


def test_datarow_values_from_reader() -> None:
    reader = MessageReader("server")
    reader.feed(b"D\x00\x00\x00\x14\x00\x03\x00\x00\x00\x0242\xff\xff\xff\xff\x00\x00\x00\x00")
    row = reader.next()
    assert isinstance(row, DataRow)
    assert row.values() == (b"42", None, b"")
