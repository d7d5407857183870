"""Values the recording keeps from the client (statement text, bind parameters, context)
are masked like results: JSON-like trees, and binary parameters kept as base64 too."""

from __future__ import annotations

import base64
import struct
from collections import Counter

from pgwarden.guard.recorder import mask_params
from pgwarden.masking import DEFAULT_CONFIG, Masker
from pgwarden.recording.events import encode_params

M = Masker(DEFAULT_CONFIG, b"k" * 32)


def test_mask_json_masks_every_string_in_a_tree() -> None:
    counts: Counter[str] = Counter()
    out = M.mask_json({"a": ["ada@example.com", 3, None], "b": {"c": "332-20-6469"}}, counts)
    assert out == {"a": ["***@*******.***", 3, None], "b": {"c": "***-**-****"}}
    assert counts == {"email": 1, "ssn": 1}


def test_binary_parameters_are_not_kept_readable() -> None:
    card = struct.pack("!q", 4111111111111111)
    params = encode_params([b"ada@example.com", card, b"Ada"], (1,), (25, 20, 25))
    counts: Counter[str] = Counter()
    out = mask_params(M, params, counts)
    # the e-mail and the int8 card: masked text, bytes withheld
    assert out[0]["data"] is None and "ada@" not in out[0]["text"]
    assert out[1]["data"] is None and "4111" not in out[1]["text"]
    # an ordinary value keeps its bytes
    assert base64.b64decode(out[2]["data"]) == b"Ada"
    assert counts["email"] == 1 and counts["card"] == 1


def test_text_parameters_masked_in_place() -> None:
    counts: Counter[str] = Counter()
    assert mask_params(M, ["4111 1111 1111 1111", "x", None], counts) == [
        "**** **** **** ****",
        "x",
        None,
    ]
