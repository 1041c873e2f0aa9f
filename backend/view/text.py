"""What the server does with hostile text, decided once for every dialect: clean or refuse.

- A lone UTF-16 surrogate (JSON's "\\ud800") is not a character: the tokenizers cannot read it
  and there is no right guess, so any field (or field name) holding one is refused.
- Control characters (NUL, escape, C1 codes) in free text (prompts) are noise from copy and paste:
  each becomes a space. In names (model, scheduler, sampler, formats) they are refused, since a
  name with a NUL in it can only be a mistake or a probe.
- Free text is normalized to NFC, so the same visible prompt draws the same image whichever way
  its accents were composed.
- Zero-width and bidirectional marks, combining characters and emoji are text and are kept; the
  length limits bound how much of them a request may carry.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from marshmallow import ValidationError

# Fields whose values are prose for the text encoders, in every dialect.
FREE_TEXT_FIELDS = frozenset({"prompt", "negative_prompt", "styles", "user"})

_SURROGATE = re.compile(r"[\ud800-\udfff]")
# C0 and C1 controls and DEL; tab, newline and carriage return are ordinary whitespace.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` safe to quote in a message or a log line (surrogates escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def clean_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body with every string cleaned as this module's policy says; refusals name the field."""
    errors: dict[str, list[str]] = {}
    cleaned = {}
    for key, value in body.items():
        name = str(key)
        if found := _SURROGATE.search(name):
            errors[printable(name)[:64]] = [_surrogate_message(found.group(), "field name")]
            continue
        try:
            cleaned[key] = _clean(value, free=name in FREE_TEXT_FIELDS)
        except ValueError as problem:
            errors[name[:64]] = [str(problem)]
    if errors:
        raise ValidationError(errors)
    return cleaned


def _clean(value: Any, free: bool) -> Any:
    if isinstance(value, str):
        return _clean_text(value, free)
    if isinstance(value, list):
        return [_clean(item, free) for item in value]
    if isinstance(value, dict):
        return {_clean_text(str(k), False): _clean(v, free) for k, v in value.items()}
    return value


def _clean_text(text: str, free: bool) -> str:
    if found := _SURROGATE.search(text):
        raise ValueError(_surrogate_message(found.group(), "text"))
    if free:
        return unicodedata.normalize("NFC", _CONTROL.sub(" ", text))
    if found := _CONTROL.search(text):
        raise ValueError(f"Contains the control character U+{ord(found.group()):04X}.")
    return text


def _surrogate_message(surrogate: str, where: str) -> str:
    return (
        f"Contains a lone UTF-16 surrogate (U+{ord(surrogate):04X}), which is not a character; "
        f"send the {where} as valid Unicode."
    )
