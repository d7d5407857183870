"""Replacements: what a detected span or a rule-matched value becomes.

Text replacements keep the shape of what they replace: every letter or digit is replaced,
every other character (spaces, dashes, dots, ``@``, quotes, braces, commas) stays where it
was. So a masked value keeps its length in characters (varchar(n) and bpchar(n) hold), stays valid
inside the text forms of arrays, composites, JSON strings, XML and COPY lines, and a
replacement made in the middle of a binary array or record keeps every length field right.
No replacement contains a digit (outside numeric contexts) or an ``@`` with letters on both
sides, so masked output never triggers a detector again.

``redact``  letters and digits become ``*``: ``**** **** **** ****``, ``***-**-****``,
            ``***.********@*******.***``.
``partial`` like redact, but the last four letters or digits stay: ``**** **** **** 1111``,
            ``***-**-6469``; an e-mail keeps its domain and loses its whole local part, dots
            included: ``************@example.com``. A value with an ``@`` whose punctuation
            must stay (a record, an array) keeps nothing.
``hash``    letters and digits become lower-case letters from HMAC-SHA256(key, value), so
            equal values mask equally (joins and GROUP BY still work) and nobody without the
            key can test a guess. Card numbers, SSNs, phones and IBANs are hashed by their
            digits (``4111 1111 1111 1111`` and ``4111111111111111`` mask alike), e-mails in
            lower case; the ``@`` becomes ``_`` so the result is no e-mail.

Numeric contexts (int/numeric/float columns in text format, numbers outside strings in
JSON, elements of numeric arrays) cannot take ``*``: there ``hash`` gives digits (same count,
the first one ``1``, so never a card number nor out of the column's range) and ``redact`` and
``partial`` give NULL (JSON ``null``, array element ``NULL``).

Backslash escapes inside a span (``\\n`` in JSON or COPY text) are kept as they are, so the
escape stays valid; such spans are redacted whatever the strategy.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Final

from pgwarden.masking.config import StrategyName

_ALNUM: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ALNUM_SET: Final = frozenset(_ALNUM)
_REDACT: Final = bytes.maketrans(_ALNUM, b"*" * len(_ALNUM))
_BACKSLASH: Final = 0x5C  # an int: `bytes in bytes` pays for a discarded TypeError first
_LETTERS: Final = "abcdefghijklmnopqrstuvwxyz"
_DIGIT_DETECTORS: Final = frozenset({"card", "ssn", "phone", "iban"})
_ESCAPE: Final = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.)", re.DOTALL)
_CACHE_LIMIT: Final = 8192
_DOMAIN_SEP: Final = b"pgwarden-mask/1\x00"
_PLAIN: Final = "columns:plain"
#: the fixed JSON value a whole json/jsonb value becomes under redact and partial
JSON_REDACTED: Final = b'"***"'


def _maskable(ch: str) -> bool:
    # surrogate escapes stand for bytes that were not valid UTF-8: mask them too
    return ch.isalnum() or "\udc80" <= ch <= "\udcff"


class Replacer:
    """Applies the configured strategies with a key."""

    def __init__(
        self,
        key: bytes,
        default: StrategyName = "redact",
        per_detector: Mapping[str, StrategyName] | None = None,
    ) -> None:
        if not key:
            raise ValueError("the masking key must not be empty")
        self._key = key
        self.default: StrategyName = default
        self._per: dict[str, StrategyName] = dict(per_detector or {})
        self._cache: dict[tuple[bytes, int, bool], str] = {}

    def strategy(self, detector: str) -> StrategyName:
        return self._per.get(detector, self.default)

    # -- keyed material ------------------------------------------------------------------------

    def _stream(self, data: bytes, n: int, alphabet: str) -> str:
        mac = hmac.new(self._key, _DOMAIN_SEP + data, hashlib.sha256).digest()
        if n > len(mac):
            mac = hashlib.shake_256(mac).digest(n)
        size = len(alphabet)
        return "".join(alphabet[b % size] for b in mac[:n])

    def letters(self, data: bytes, n: int) -> str:
        """``n`` lower-case letters determined by ``data`` and the key."""
        key = (data, n, False)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._stream(data, n, _LETTERS)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def digits(self, data: bytes, n: int) -> str:
        """``n`` digits determined by ``data`` and the key; the first is always ``1``."""
        if n <= 0:
            return ""
        key = (data, n, True)
        hit = self._cache.get(key)
        if hit is None:
            hit = "1" + self._stream(data, n, "0123456789")[1:]
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    @staticmethod
    def _normal(detector: str, span: bytes) -> bytes:
        if detector in _DIGIT_DETECTORS:
            return bytes(c for c in span if c in _ALNUM_SET).upper()
        if detector == "email":
            return span.lower()
        return span

    # -- shapes --------------------------------------------------------------------------------

    def _shape(
        self,
        text: str,
        strategy: StrategyName,
        detector: str,
        seed: bytes,
        *,
        escapes: bool,
    ) -> str:
        chars = list(text)
        protected: set[int] = set()
        if escapes and "\\" in text:
            for m in _ESCAPE.finditer(text):
                protected.update(range(m.start(), m.end()))
            strategy = "redact"
        positions = [i for i, ch in enumerate(chars) if i not in protected and _maskable(ch)]
        if strategy == "partial":
            at = text.rfind("@")
            if at >= 0 and detector in ("email", _PLAIN):
                # the whole local part goes (its dots and dashes too, so that what is left
                # is no e-mail address); the domain stays
                positions = [i for i in range(at) if i not in protected]
            elif at < 0:
                positions = positions[:-4] if len(positions) > 4 else []
            # else: an @ where punctuation must stay (composite values, custom spans): the
            # last four could rebuild an address around it, so nothing is kept
        if strategy == "hash":
            fill = self.letters(seed, len(positions))
            for i, ch in zip(positions, fill, strict=True):
                chars[i] = ch
            # letters around an @ would look like an address again
            chars = ["_" if ch == "@" else ch for ch in chars]
        else:
            for i in positions:
                chars[i] = "*"
        return "".join(chars)

    def text(self, detector: str, span: bytes, *, escapes: bool = True) -> bytes:
        """The replacement for a detected span in a text context (same shape)."""
        strategy = self.strategy(detector)
        if strategy == "redact" and span.isascii() and (_BACKSLASH not in span or not escapes):
            return span.translate(_REDACT)
        text = span.decode("utf-8", "surrogateescape")
        seed = self._normal(detector, span)
        return self._shape(text, strategy, detector, seed, escapes=escapes).encode(
            "utf-8", "surrogateescape"
        )

    def number(self, detector: str, span: bytes) -> bytes | None:
        """The replacement for a span in a numeric context, or None for NULL."""
        if self.strategy(detector) != "hash":
            return None
        count = sum(1 for c in span if 48 <= c <= 57)
        fill = iter(self.digits(self._normal(detector, span) or span, count))
        return bytes(ord(next(fill)) if 48 <= c <= 57 else c for c in span)

    # -- whole values (column rules) -----------------------------------------------------------

    def whole_text(
        self, strategy: StrategyName, value: bytes, *, escapes: bool = False, plain: bool = False
    ) -> bytes:
        """A rule-matched text value (any text-like or unknown type, text format).
        ``plain``: a plain string (text, varchar, ...), whose punctuation may be masked too;
        otherwise (composites, arrays, COPY fields) punctuation is structure and stays."""
        text = value.decode("utf-8", "surrogateescape")
        detector = _PLAIN if plain else "columns"
        return self._shape(text, strategy, detector, value, escapes=escapes).encode(
            "utf-8", "surrogateescape"
        )

    def whole_json(self, strategy: StrategyName, value: bytes) -> bytes:
        """A rule-matched json value: a JSON string (redact/partial fixed, hash keyed)."""
        if strategy == "hash":
            return b'"' + self.letters(value, 16).encode("ascii") + b'"'
        return JSON_REDACTED

    def whole_number(self, strategy: StrategyName, value: bytes) -> bytes | None:
        """A rule-matched number in text format: hashed digits (mantissa only), else NULL."""
        if strategy != "hash":
            return None
        cut = len(value)
        for marker in (b"e", b"E"):
            at = value.find(marker)
            if at >= 0:
                cut = min(cut, at)
        mantissa = value[:cut]
        count = sum(1 for c in mantissa if 48 <= c <= 57)
        fill = iter(self.digits(value, count))
        return bytes(ord(next(fill)) if 48 <= c <= 57 else c for c in mantissa) + value[cut:]

    def whole_int(self, strategy: StrategyName, value: int) -> int | None:
        """A rule-matched (or detected) integer: same digit count from the hash, else None."""
        if strategy != "hash":
            return None
        n = len(str(abs(value)))
        replaced = int(self.digits(str(value).encode("ascii"), n))
        return -replaced if value < 0 else replaced
