"""Every API answer as JSON, written directly: what ``ExactJSONProvider.dumps`` tries before simplejson.

Measured (bench/instructions.py, issue 17): a balance request costs 1,048K
instructions with it, 1,089K without (see the package's docstring).
"""

from __future__ import annotations

from decimal import Decimal
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any


def flat_json(obj: Any) -> str | None:
    """``obj`` as compact JSON if it is a flat dict (str keys; str, bool, int, None, finite Decimal values), or None.

    Every API answer is such a dict. simplejson builds an encoder for each call
    with these options; this writes the same text several times faster: a
    ``Decimal`` as ``str()`` gives it (exact, as simplejson does with
    ``use_decimal``) and strings with the stdlib's C escaper (ASCII only, as
    simplejson's default). tests/test_json_answers.py checks both agree.
    """
    if type(obj) is not dict:
        return None
    parts = []
    for key, value in obj.items():
        kind = type(value)
        if type(key) is not str:
            return None
        if kind is str:
            text = encode_basestring_ascii(value)
        elif kind is bool:
            text = "true" if value else "false"
        elif kind is int or (kind is Decimal and value.is_finite()):
            text = str(value)
        elif value is None:
            text = "null"
        else:
            return None
        parts.append(f"{encode_basestring_ascii(key)}:{text}")
    return "{" + ",".join(parts) + "}"
