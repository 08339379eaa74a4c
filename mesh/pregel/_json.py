"""Compact JSON text for records and checkpoints, from one reusable C encoder (json.dumps builds one per call)."""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


if c_make_encoder is not None:
    # Arguments: markers (no cycle check; a cycle ends in RecursionError), default, string encoder,
    # indent, key separator, item separator, sort_keys, skipkeys, allow_nan.
    _encode = c_make_encoder(None, _refuse, encode_basestring, None, ":", ",", False, False, False)

    def _encode_text(value: Any) -> str:
        return "".join(_encode(value, 0))

else:  # a Python without the C accelerator
    _encode_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_refuse).encode


def dumps(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)``, faster.

    Raises TypeError (not serialisable), ValueError (NaN or infinity) or
    RecursionError (a cycle).
    """
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    return _encode_text(value)
