"""Parsing request bodies as JSON, strictly: what would crash the standard library's parser
(nesting deep enough to exhaust the stack, integers of thousands of digits) is refused here,
with a reason.

NaN and Infinity (Python's extensions, not JSON) still parse, as does 1e400 (infinity): the
schemas refuse non-finite numbers field by field, so the error names the field."""

from __future__ import annotations

import json
from typing import Any

from flask.json.provider import DefaultJSONProvider

# Real bodies nest two or three levels (A1111's override_settings); 32 leaves plenty of room and
# keeps every later walk over the body far from Python's recursion limit.
MAX_DEPTH = 32


class JSONInputError(ValueError):
    """The body is not JSON this server accepts; the message says why, in the client's terms."""


def parse_json(data: bytes | str) -> Any:
    """The JSON value in `data`; JSONInputError (a ValueError) for anything but strict JSON."""
    try:
        value = json.loads(data)
    except JSONInputError:
        raise
    except RecursionError:
        raise JSONInputError(f"it is nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError:
        raise JSONInputError("it is not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise JSONInputError(f"{error.msg} at line {error.lineno}, column {error.colno}") from None
    except ValueError:  # int() refuses numbers of more than 4300 digits (CVE-2020-10735)
        raise JSONInputError("a number in it has too many digits") from None
    if _depth(value) > MAX_DEPTH:
        raise JSONInputError(f"it is nested more than {MAX_DEPTH} levels deep")
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value`, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        if children:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, reading request bodies with `parse_json`."""

    sort_keys = False  # keep the documented field order in responses

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse a request body strictly (see `parse_json`)."""
        return parse_json(s)
