"""Content detectors: find sensitive spans in the bytes of a value.

Everything works on bytes (UTF-8 or any ASCII-compatible client encoding), so DataRow values,
COPY lines and binary text values are scanned without decoding. ``Scanner.may_match`` is the
cheap pre-check (a translate and a few substring searches, no Python loop) that lets ordinary
data through untouched; ``Scanner.find`` is the exact search.

Detectors and their rules (see the package docstring for why):

card
    13 to 19 digits, either one run of digits or groups separated by single spaces or dashes
    (first group of four, then groups of three to six: 4-4-4-4, 4-6-5, 4-4-4-4-3, ...),
    Luhn-valid, starting with 2-6 (the major networks: Mastercard 2/5, Amex/Diners/JCB 3,
    Visa 4, Discover/UnionPay/Maestro 6). Digit runs longer than 19 (concatenations such as
    ``string_agg(card, '')``) are searched for embedded card numbers, and so are shorter runs
    that are not a card themselves but end or start a dashed or spaced group (``ssn || card``
    gives ``332-20-6469371449194875746``); a lone number of up to 19 digits is only a card whole
    (ids). A run glued to hex letters inside a UUID or a long hex string is not a card.
ssn
    ``NNN-NN-NNNN``; nine digits (bare, or with spaces/dashes) only after an SSN-like key
    (``ssn``, ``social security``, ``tax id``; JSON keys, XML tags, ``Key (ssn)=(...)``), or in
    a column the caller marks as holding SSNs. Area 000, 666, 900-999, group 00 and serial
    0000 are not SSNs.
email
    ``local@domain.tld`` in any case: local part of ``A-Za-z0-9._%+-`` (up to 64), domain
    labels, a TLD of two or more letters.
phone, iban, secrets, ip
    Optional: North-American and ``+``-prefixed international numbers with separators;
    IBANs checked with mod-97; AWS access keys, private-key PEM blocks, JWTs, bearer tokens,
    GitHub/Slack/Stripe tokens, AWS secret keys and URL passwords after a key; IPv4 and IPv6.
custom
    A regular expression from the configuration, matched against the bytes of each value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

Span = tuple[int, int, str]

CARD_PREFIXES: Final = frozenset(b"23456")
_DIGITS: Final = frozenset(b"0123456789")
_DBL: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)
#: ASCII digit -> its Luhn-doubled digit sum, as a byte value (for sum() over translate())
_DBL_TABLE: Final = bytes([_DBL[c - 48] if 48 <= c <= 57 else 0 for c in range(256)])
#: digit runs longer than this are masked whole instead of searched window by window
MAX_DIGIT_RUN: Final = 4096

# Pre-check: digits fold to "0", letters to lower case, spaces and dashes are deleted, so a
# card number with single separators becomes 13+ consecutive zeros.
_FOLD: Final = bytes(
    [48 if 48 <= c <= 57 else (c + 32 if 65 <= c <= 90 else c) for c in range(256)]
)
_Z13: Final = b"0" * 13
_SSN_QUICK: Final = re.compile(rb"-[0-9]{2}-[0-9]{4}")

# Membership tests on bytes avoid `bytes in bytes`: CPython first tries the left operand as an
# integer and builds (then drops) a TypeError for it, ~7x the cost of find() or `int in bytes`.
_AT: Final = ord("@")


def _ssn_words(folded: bytes) -> bool:
    """Whether the folded (lower-case) text names an SSN: three substring searches, where the
    regular expression ``ssn|social|tax`` tried its alternatives at every position (~3x as
    long, over every statement text and every run of rows)."""
    return folded.find(b"ssn") >= 0 or folded.find(b"social") >= 0 or folded.find(b"tax") >= 0


#: a stretch of digits, spaces and dashes that may hold 13+ digits with single separators
_CARD_AREA: Final = re.compile(rb"[0-9][0-9 -]{11,}[0-9]")
_DIGIT_GROUP: Final = re.compile(rb"[0-9]+")
_CARD_4X4: Final = re.compile(rb"[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]{4}")
_HEX_LETTERS: Final = frozenset(b"abcdefABCDEF")
_TOKEN_CHARS: Final = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")
_UUID: Final = re.compile(
    rb"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{32,}")

_SSN_CONTEXT: Final = re.compile(
    rb"(?i:ssns?|social[ _.-]?sec(?:urity)?(?:[ _.-]?(?:no|num|number|nbr))?|tax[ _.-]?id)"
    rb"[^0-9A-Za-z\r\n\x00]{0,6}([0-9]{3})[ -]?([0-9]{2})[ -]?([0-9]{4})(?![0-9])"
)
# Where _SSN_CONTEXT can start, in the lower-cased text: its case-insensitive alternation,
# searched for at every byte, costs ~20 ns a byte (and so does a regular expression of these
# three words); it is tried only where bytes.find finds one of them.
_SSN_KEYS: Final = (b"ssn", b"social", b"tax")
_SSN_BARE: Final = re.compile(rb"(?<![0-9])([0-9]{3})[ -]?([0-9]{2})[ -]?([0-9]{4})(?![0-9])")
#: column names that mark a column as holding SSNs (bare nine digits are SSNs there)
SSN_COLUMN_NAME: Final = re.compile(r"(?i)ssn|social.?sec|tax.?id")

_LOCAL: Final = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_NOT_LOCAL_TO_NUL: Final = bytes([c if c in _LOCAL else 0 for c in range(256)])
_DOMAIN: Final = re.compile(rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")

_PHONE: Final = re.compile(
    # North American: (202) 555-0100, 202-555-0100, +1 202 555 0100
    rb"(?<![0-9A-Za-z+])(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\)|[2-9][0-9]{2})"
    rb"[ .-]?[0-9]{3}[ .-][0-9]{4}"
    rb"(?![0-9A-Za-z])"
    # international: + country code, then digit groups
    rb"|(?<![0-9A-Za-z+])\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,5}\)?){1,6}(?![0-9A-Za-z])"
)
_PHONE_TRIGGER: Final = re.compile(rb"[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4}|\+[1-9]")
_IBAN: Final = re.compile(
    rb"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])"
)
_IBAN_TRIGGER: Final = re.compile(rb"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4}")
_SECRETS: Final = re.compile(
    rb"(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}"
    rb"|-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY-----|.*)"
    rb"|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
    rb"|(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    rb"|xox[abposr]-[A-Za-z0-9-]{10,}"
    rb"|(?:sk|rk)_live_[A-Za-z0-9]{16,}"
    rb"|(?i:bearer)[ \t]+(?P<bearer>[A-Za-z0-9._~+/=-]{12,})"
    rb"|(?i:aws_?secret_?access_?key|secret_?access_?key)[\"' \t:=]{1,6}(?P<aws>[A-Za-z0-9/+]{40})"
    rb"|[A-Za-z][A-Za-z0-9+.-]{1,20}://[^/\s:@\x00]{1,128}:(?P<pw>[^/\s@\x00]{1,256})@",
    re.DOTALL,
)
_OCTET: Final = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IP: Final = re.compile(
    rb"(?<![0-9.])" + _OCTET + rb"(?:\." + _OCTET + rb"){3}(?![0-9]|\.[0-9])"
    rb"|(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![0-9A-Fa-f:])"
    rb"|(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){1,6}(?::[0-9A-Fa-f]{1,4}){1,6}(?![0-9A-Fa-f:])"
)
_IP_TRIGGER: Final = re.compile(rb"[0-9]\.[0-9]{1,3}\.[0-9]|:[0-9A-Fa-f]{0,4}:")


def luhn_ok(digits: bytes) -> bool:
    """Luhn check of ASCII digits."""
    plain = digits[-1::-2]
    return (sum(plain) - 48 * len(plain) + sum(digits[-2::-2].translate(_DBL_TABLE))) % 10 == 0


def is_card(digits: bytes) -> bool:
    """13 to 19 ASCII digits, a network's leading digit, Luhn-valid."""
    return 13 <= len(digits) <= 19 and digits[0] in CARD_PREFIXES and luhn_ok(digits)


def ssn_valid(area: bytes, group: bytes, serial: bytes) -> bool:
    # area 000, 666 and 9xx, group 00 and serial 0000 were never issued
    return area not in (b"000", b"666") and area[0] != 57 and group != b"00" and serial != b"0000"


def _hex_glued(buf: bytes, s: int, e: int) -> bool:
    """Is the digit run buf[s:e] part of a UUID or a long hex string (not a card)?"""
    before = buf[s - 1] if s > 0 else -1
    after = buf[e] if e < len(buf) else -1
    if before not in _HEX_LETTERS and after not in _HEX_LETTERS:
        return False
    ts, te, n = s, e, len(buf)
    while ts > 0 and buf[ts - 1] in _TOKEN_CHARS:
        ts -= 1
    while te < n and buf[te] in _TOKEN_CHARS:
        te += 1
    token = buf[ts:te].strip(b"-")
    return _UUID.fullmatch(token) is not None or _HEX.fullmatch(token) is not None


def _card_windows(buf: bytes, s: int, e: int, out: list[Span]) -> None:
    """Card numbers embedded in a digit run longer than 19 (buf[s:e], digits only)."""
    n = e - s
    if n > MAX_DIGIT_RUN:
        out.append((s, e, "card"))
        return
    d = buf[s:e]
    # p0[k]: Luhn sum of d[:k] doubling even positions; p1: doubling odd positions.
    p0 = [0] * (n + 1)
    p1 = [0] * (n + 1)
    for k in range(n):
        v = d[k] - 48
        if k & 1:
            p0[k + 1] = p0[k] + v
            p1[k + 1] = p1[k] + _DBL[v]
        else:
            p0[k + 1] = p0[k] + _DBL[v]
            p1[k + 1] = p1[k] + v
    for i in range(n - 12):
        if d[i] not in CARD_PREFIXES:
            continue
        for j in range(i + 13, min(i + 19, n) + 1):
            # the last digit (j-1) is not doubled; doubled digits have the other parity
            total = p0[j] - p0[i] if (j - 1) & 1 else p1[j] - p1[i]
            if total % 10 == 0:
                out.append((s + i, s + j, "card"))


def find_cards(buf: bytes, out: list[Span]) -> None:
    for m in _CARD_AREA.finditer(buf):
        s, e = m.span()
        # The usual shapes answered directly (what _find_cards_in_area decides for them):
        # one run of 13-19 digits, or four groups of four with single separators.
        n = e - s
        if n == 19 and _CARD_4X4.fullmatch(buf, s, e) is not None:
            if not _hex_glued(buf, s, e) and is_card(
                buf[s : s + 4] + buf[s + 5 : s + 9] + buf[s + 10 : s + 14] + buf[s + 15 : e]
            ):
                out.append((s, e, "card"))
            continue
        if n <= 19 and buf[s:e].isdigit():
            if not _hex_glued(buf, s, e) and is_card(buf[s:e]):
                out.append((s, e, "card"))
            continue
        _find_cards_in_area(buf, m, out)


def _find_cards_in_area(buf: bytes, m: re.Match[bytes], out: list[Span]) -> None:
    """Card numbers in one stretch of digits, spaces and dashes (``_CARD_AREA``)."""
    area = m.group()
    if len(area) - area.count(b" ") - area.count(b"-") < 13:
        return  # fewer than 13 digits (dates, times, short numbers)
    groups = [g.span() for g in _DIGIT_GROUP.finditer(buf, m.start(), m.end())]
    # split the area into runs: groups separated by exactly one space or dash
    first = 0
    for k in range(1, len(groups) + 1):
        if k == len(groups) or groups[k][0] - groups[k - 1][1] != 1:
            run = groups[first:k]
            first = k
            if sum(ge - gs for gs, ge in run) >= 13:
                _card_run(buf, run, out)


def _card_run(buf: bytes, groups: list[tuple[int, int]], out: list[Span]) -> None:
    """Card numbers in one run of digit groups separated by single spaces or dashes.

    A card is a single group of 13-19 digits, or a first group of four followed by groups of
    three to six. Where values were glued together (``string_agg(card, '')``), the first
    group may carry other digits before its last four, and the last group other digits after
    its first three to six.
    """
    if _hex_glued(buf, groups[0][0], groups[-1][1]):
        return
    count = len(groups)
    for i, (gs, ge) in enumerate(groups):
        glen = ge - gs
        if glen >= 13:
            if glen > 19:
                _card_windows(buf, gs, ge, out)
            elif is_card(buf[gs:ge]):
                out.append((gs, ge, "card"))
            elif count > 1:
                # glued to other values (``ssn || card``): a card may hide inside. A lone
                # number (an id) is not searched: most 19-digit ids hold some Luhn window.
                _card_windows(buf, gs, ge, out)
        if glen < 4 or i == count - 1:
            continue
        start = ge - 4
        digits = buf[start:ge]
        for j in range(i + 1, count):
            hs, he = groups[j]
            hlen = he - hs
            if hlen > 6:
                # glued to what follows: its first three to six digits may end a card
                for m in range(3, 7):
                    if 13 <= len(digits) + m <= 19 and is_card(digits + buf[hs : hs + m]):
                        out.append((start, hs + m, "card"))
                break
            if hlen < 3:
                break
            digits += buf[hs:he]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and is_card(digits):
                out.append((start, he, "card"))


def find_ssns(buf: bytes, out: list[Span], bare: bool = False, context: bool = True) -> None:
    """``context=False`` skips the search for nine digits after an SSN-like key (when the
    caller knows there is no such key)."""
    # NNN-NN-NNNN, not part of a longer dashed number: found from its literal "-NN-NNNN"
    # (a search with a literal first byte is much faster than one starting with a class)
    n = len(buf)
    digits = _DIGITS
    first = len(out)
    for m in _SSN_QUICK.finditer(buf):
        d1, e = m.start(), m.end()
        s = d1 - 3
        if s < 0:
            continue
        area = buf[s:d1]
        if not (area[0] in digits and area[1] in digits and area[2] in digits):
            continue
        if s >= 2 and buf[s - 1] == 45 and buf[s - 2] in digits:
            continue
        if e + 1 < n and buf[e] == 45 and buf[e + 1] in digits:
            continue
        if ssn_valid(area, buf[d1 + 1 : d1 + 3], buf[d1 + 4 : e]):
            out.append((s, e, "ssn"))
    if context:
        # what _SSN_CONTEXT.finditer(buf) finds: a match starts with a key word, and the
        # search resumes after each match, valid or not
        lowered = buf.lower()
        starts: list[int] = []
        for word in _SSN_KEYS:
            at = lowered.find(word)
            while at >= 0:
                starts.append(at)
                at = lowered.find(word, at + 1)
        starts.sort()
        resume = 0
        match = _SSN_CONTEXT.match
        # a dashed SSN after its key was found above already: the same span twice would
        # only be merged away later, after costing its share of every step before that
        quick = set(out[first:]) if starts and len(out) > first else ()
        for start in starts:
            if start < resume:
                continue
            hit = match(buf, start)
            if hit is not None:
                resume = hit.end()
                span = (hit.start(1), hit.end(3), "ssn")
                if span not in quick and ssn_valid(hit[1], hit[2], hit[3]):
                    out.append(span)
    if bare:
        for m in _SSN_BARE.finditer(buf):
            if ssn_valid(m[1], m[2], m[3]):
                out.append((m.start(), m.end(), "ssn"))


def find_emails(buf: bytes, out: list[Span]) -> None:
    at = buf.find(b"@")
    if at < 0:
        return
    # the local part's start: just after the last byte before "@" that cannot be in one
    # (found by rfind in a copy where those bytes are NUL, not by a Python loop)
    marked = buf.translate(_NOT_LOCAL_TO_NUL)
    while at >= 0:
        lim = max(0, at - 64)
        s = max(lim, marked.rfind(b"\x00", lim, at) + 1)
        if s < at:
            m = _DOMAIN.match(buf, at + 1)
            if m is not None:
                out.append((s, m.end(), "email"))
        at = buf.find(b"@", at + 1)


def _iban_ok(text: bytes) -> bool:
    compact = text.replace(b" ", b"")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(chr(c), 36)) for c in moved))
    except ValueError:
        return False
    return number % 97 == 1


def find_phones(buf: bytes, out: list[Span]) -> None:
    for m in _PHONE.finditer(buf):
        digits = sum(1 for c in m.group() if c in _DIGITS)
        if 9 <= digits <= 15:
            out.append((m.start(), m.end(), "phone"))


def find_ibans(buf: bytes, out: list[Span]) -> None:
    for m in _IBAN.finditer(buf):
        text = m.group()
        while text:
            if _iban_ok(text):
                out.append((m.start(), m.start() + len(text), "iban"))
                break
            cut = text.rfind(b" ")
            if cut < 0:
                break
            text = text[:cut]


def find_secrets(buf: bytes, out: list[Span]) -> None:
    for m in _SECRETS.finditer(buf):
        for group in ("bearer", "aws", "pw"):
            if m.group(group) is not None:
                out.append((m.start(group), m.end(group), "secrets"))
                break
        else:
            out.append((m.start(), m.end(), "secrets"))


def find_ips(buf: bytes, out: list[Span]) -> None:
    for m in _IP.finditer(buf):
        out.append((m.start(), m.end(), "ip"))


_OPTIONAL: Final = {
    "phone": (find_phones, _PHONE_TRIGGER),
    "iban": (find_ibans, _IBAN_TRIGGER),
    "secrets": (find_secrets, _SECRETS),
    "ip": (find_ips, _IP_TRIGGER),
}


class Scanner:
    """The enabled detectors, compiled once."""

    __slots__ = (
        "_custom",
        "_fold",
        "_optional",
        "_triggers",
        "active",
        "always",
        "card",
        "email",
        "ssn",
    )

    def __init__(self, detectors: Iterable[str], custom: Sequence[tuple[str, str]] = ()) -> None:
        names = set(detectors)
        self.card = "card" in names
        self.ssn = "ssn" in names
        self.email = "email" in names
        self._fold = self.card or self.ssn
        self._optional = [_OPTIONAL[n][0] for n in sorted(names) if n in _OPTIONAL]
        self._triggers = [_OPTIONAL[n][1] for n in sorted(names) if n in _OPTIONAL]
        self._custom = [(name, re.compile(p.encode("utf-8"))) for name, p in custom]
        #: custom patterns cannot be pre-checked (they may be anchored): always scan
        self.always = bool(self._custom)
        self.active = bool(self.card or self.ssn or self.email or self._optional or self._custom)

    @property
    def per_value(self) -> bool:
        """Custom patterns may be anchored (``^EMP-[0-9]{6}$``): they must see each value on
        its own, never several values joined into one buffer."""
        return bool(self._custom)

    def may_match(self, buf: bytes) -> bool:
        """Cheap pre-check: False means ``find`` is certain to find nothing (and nothing
        within any part of ``buf`` either, so it can be run on a whole message)."""
        if self.always:
            return True
        if self.email and _AT in buf:
            return True
        if self._fold:
            t = buf.translate(_FOLD, b" -")
            if self.card and t.find(_Z13) >= 0:
                return True
            if self.ssn and (_ssn_words(t) or _SSN_QUICK.search(buf)):
                return True
        if not self._triggers:  # the default detectors have none
            return False
        return any(trigger.search(buf) is not None for trigger in self._triggers)

    def find(self, buf: bytes, *, ssn_bare: bool = False) -> list[Span]:
        """Every detection in ``buf`` (overlapping spans possible; see ``merge``)."""
        out: list[Span] = []
        if self._fold:
            t = buf.translate(_FOLD, b" -")
            if self.card and t.find(_Z13) >= 0:
                find_cards(buf, out)
            if self.ssn:
                find_ssns(buf, out, ssn_bare, _ssn_words(t))
        if self.email and _AT in buf:
            find_emails(buf, out)
        for finder in self._optional:
            finder(buf, out)
        for name, pattern in self._custom:
            for m in pattern.finditer(buf):
                if m.end() > m.start():
                    out.append((m.start(), m.end(), name))
        return out


def merge(spans: list[Span]) -> list[Span]:
    """Sorted, non-overlapping spans: overlapping detections are masked as one."""
    if len(spans) <= 1:
        return spans
    spans = sorted(spans, key=lambda sp: (sp[0], -sp[1]))
    out = [spans[0]]
    for s, e, name in spans[1:]:
        ps, pe, pname = out[-1]
        if s < pe:
            if e > pe:
                out[-1] = (ps, e, pname)
        else:
            out.append((s, e, name))
    return out
