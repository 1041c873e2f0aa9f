"""AUTOMATIC1111's prompt syntax: emphasis weights and BREAK are read, the rest is refused.

Pure text, no torch: the request schemas check prompts with it in the API process, and the model
layer turns the parsed pieces into weighted embeddings (`prompt_weights`).

`parse_prompt_attention` gives exactly the pieces AUTOMATIC1111's function of that name gives
(modules/prompt_parser.py), weights included to the last float bit, since clients move prompts
between the two servers and expect the same emphasis:

- `(text)` multiplies by 1.1, `[text]` divides by 1.1, `(text:1.3)` multiplies by 1.3; nesting
  multiplies; an unclosed bracket still counts until the end of the prompt;
- `\\(`, `\\)`, `\\[`, `\\]` and `\\\\` are the literal characters;
- `BREAK` (upper case, a word on its own) starts a new 75-token chunk.

Prompt editing (`[from:to:when]`, `[to:when]`, `[from::when]`), alternation (`[a|b]`) and
composition (`a AND b`) change the prompt during sampling; this server does not do that, and
reading them as plain text would draw something else than the client meant, so `problem` names
them and the request is refused.
"""

from __future__ import annotations

import re

# One alternative per token kind, in AUTOMATIC1111's order (the order decides ties).
_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ROUND = 1.1
_SQUARE = 1 / 1.1
BREAK = ("BREAK", -1.0)  # AUTOMATIC1111's marker piece for a forced chunk break

_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")
_AND = re.compile(r"\bAND\b")


class PromptSyntaxError(ValueError):
    """A prompt uses syntax this server does not run; the message names it."""


def parse_prompt_attention(text: str) -> list[list]:  # noqa: PLR0912 (A1111's one loop, kept)
    """`[[text, weight], ...]` as AUTOMATIC1111 parses emphasis (`["BREAK", -1]` marks a BREAK).

    Raises PromptSyntaxError for a weight that is not a number, such as `(a:1.2.3)`.
    """
    pieces: list[list] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _ATTENTION.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token == "(":
            round_open.append(len(pieces))
        elif token == "[":
            square_open.append(len(pieces))
        elif weight is not None and round_open:
            multiply(round_open.pop(), _weight(weight))
        elif token == ")" and round_open:
            multiply(round_open.pop(), _ROUND)
        elif token == "]" and square_open:
            multiply(square_open.pop(), _SQUARE)
        else:
            for index, part in enumerate(_BREAK.split(token)):
                if index > 0:
                    pieces.append(list(BREAK))
                pieces.append([part, 1.0])
    # Unclosed brackets apply to the rest of the prompt, innermost last (as AUTOMATIC1111).
    for start in round_open:
        multiply(start, _ROUND)
    for start in square_open:
        multiply(start, _SQUARE)
    if not pieces:
        pieces = [["", 1.0]]
    merged = [pieces[0]]
    for piece in pieces[1:]:
        if piece[1] == merged[-1][1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    return merged


def _weight(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise PromptSyntaxError(f"Emphasis weight '{text[:20]}' is not a number.") from None


def problem(text: str) -> str | None:
    """Why `text` cannot be drawn as AUTOMATIC1111 would draw it, or None if it can."""
    for start, end in _bracket_pairs(text):
        inner = text[start + 1 : end]
        colons, bars = _top_level(inner)
        if bars:
            return (
                f"Alternation '[a|b]' is not supported (found '{_quote(text, start, end)}'); "
                "escape literal brackets as \\[ and \\]."
            )
        if colons and _NUMBER.fullmatch(inner[colons[-1] + 1 :]):
            return (
                "Prompt editing '[from:to:when]' (also '[to:when]' and '[from::when]') is not "
                f"supported (found '{_quote(text, start, end)}'); escape literal brackets as "
                "\\[ and \\]."
            )
    if _AND.search(text):
        return (
            "Composable prompts ('a AND b') are not supported; write 'and' in lower case for "
            "the word."
        )
    try:
        parse_prompt_attention(text)
    except PromptSyntaxError as error:
        return str(error)
    return None


def check(text: str) -> list[list]:
    """The parsed pieces of `text`; PromptSyntaxError if it uses syntax this server refuses."""
    found = problem(text)
    if found is not None:
        raise PromptSyntaxError(found)
    return parse_prompt_attention(text)


def is_plain(text: str, pieces: list[list]) -> bool:
    """Whether `pieces` are `text` itself at weight 1 (no emphasis, escape or BREAK)."""
    return len(pieces) == 1 and pieces[0][1] == 1.0 and pieces[0][0] == text


def _bracket_pairs(text: str) -> list[tuple[int, int]]:
    """(start, end) of each balanced, unescaped `[...]`."""
    pairs, opened = [], []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            opened.append(index)
        elif char == "]" and opened:
            pairs.append((opened.pop(), index))
        index += 1
    return pairs


def _top_level(inner: str) -> tuple[list[int], list[int]]:
    """Positions of the `:` and `|` in `inner` outside any nested bracket or escape."""
    colons, bars, depth, index = [], [], 0, 0
    while index < len(inner):
        char = inner[index]
        if char == "\\":
            index += 2
            continue
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        elif depth == 0 and char == ":":
            colons.append(index)
        elif depth == 0 and char == "|":
            bars.append(index)
        index += 1
    return colons, bars


def _quote(text: str, start: int, end: int) -> str:
    found = text[start : end + 1]
    return found if len(found) <= 40 else found[:37] + "..."
