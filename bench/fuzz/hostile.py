"""Hypothesis strategies for hostile values: text, numbers, JSON, header values, path parts."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from functools import cache
from typing import Any, TypeVar
from urllib.parse import quote

from hypothesis import strategies as st

T = TypeVar("T")


class Raw(str):
    """JSON text that `dump` writes verbatim: numbers Python cannot hold, invalid tokens, depth."""


class Pairs(list):
    """A JSON object written from (key, value) pairs, so that keys may repeat."""


# Characters and short strings that break naive text handling.
ATOMS: tuple[str, ...] = (
    "\ud800", "\udbff", "\udc00", "\udfff", "\ud83d",  # lone UTF-16 surrogates
    "\x00", "\x01", "\x07", "\x08", "\x1b[31m", "\x7f", "\x85", "\x9b", "\t", "\r\n", "\n\n\n",
    "\u2028", "\u2029", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad",  # invisible
    "\u200e", "\u200f", "\u202a", "\u202b", "\u202d", "\u202e", "\u2066", "\u2067", "\u2069",
    "\u061c", "e\u0301", "a" + "\u0336\u0301\u0318\u0489" * 8, "\u0e47" * 5, "\u1100\u1161",
    "\ufffd", "\ufffe", "\uffff", "\U0010ffff", "\U000e0001", "\U0001f600", "\U0001f3f3\ufe0f",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", "\U0001f1fa\U0001f1f3",
    "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd", "\u65e5\u672c\u8a9e",
    "\ufdfd", "\U00012031", "\u0130", "\u00df", "\ufb03", "\u2126", "\u212a",  # case-mapping traps
    "", " ", "   ", "\u3000", "\u00a0", "0", "-1", "null", "true", "NaN", "1e400", "None",
    "%00", "%ED%A0%80", "%s%n%x%p", "{0}{1}", "{{7*7}}", "${jndi:ldap://x/a}", "' OR '1'='1",
    "<script>alert(1)</script>", "../../../../etc/passwd", "..\\..\\boot.ini", "\\", '"', "'",
    "demo", "demo ", " demo", "DEMO", "demo\x00", "demo/../demo", "dall-e-3", "gpt-image-1",
    "euler_a", "Euler a", "karras", "automatic", "b64_json", "json", "image", "png", "webp",
    "64x64", "0x0", "99999x99999", "auto", "-64x64", "64x64\n", "\uff16\uff14x\uff16\uff14",
    "\u0661\u0662\u0668",  # Arabic-Indic digits: 128 to str.isdigit and to \d
)  # fmt: skip
REPEATS = (1, 2, 3, 63, 64, 77, 1000, 1999, 2000, 2001, 10_000)
RAW_NUMBERS = (
    "1e400", "-1e400", "1e-400", "-1e-400", "1E+400", "-0", "-0.0", "0e0", "1e2", "64.0",
    "64.00000000000001", "63.99999999999999", "64.5", "1.7976931348623157e308", "5e-324",
    "18446744073709551616", "-9223372036854775809", "4294967296", "4294967295", "2147483648",
    "9" * 400, "-" + "9" * 4300, "9" * 4301, "9" * 20_000, "0." + "0" * 5000 + "1",
    "NaN", "Infinity", "-Infinity", "0x40", "064", "+64", ".5", "1.", "1e", "--1", "1_000",
)  # fmt: skip
DEPTHS = (2, 31, 32, 33, 64, 100, 999, 1000, 1001, 5000, 10_000, 30_000)
INVALID_UTF8 = (
    b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc",
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82",
)  # fmt: skip


@cache
def dice() -> st.SearchStrategy[random.Random]:
    """A Random for fair branch choices, seeded by four hypothesis integers.

    Hypothesis leans hard on its simplest draws (0 in about one draw in six), which would take
    the same branch again and again; four of them are rarely all simple at once.
    """
    word = st.integers(0, 2**64 - 1)
    return st.tuples(word, word, word, word).map(
        lambda words: random.Random(sum(w << (64 * i) for i, w in enumerate(words)))
    )


def pick(options: Sequence[T]) -> st.SearchStrategy[T]:
    """One of `options`, uniformly: hypothesis's own choices lean hard on the first one."""
    return dice().map(lambda rnd: rnd.choice(options))


def choose(*strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value from one of `strategies`, each as likely (unlike st.one_of)."""
    return pick(strategies).flatmap(lambda strategy: strategy)


@cache
def surrogates() -> st.SearchStrategy[str]:
    """Lone UTF-16 surrogates (no JSON parser should turn one into a valid string)."""
    return st.integers(0xD800, 0xDFFF).map(chr)


@cache
def controls() -> st.SearchStrategy[str]:
    """C0 and C1 control characters, NUL included."""
    return choose(st.integers(0, 0x1F), st.integers(0x7F, 0x9F)).map(chr)


@cache
def _piece() -> st.SearchStrategy[str]:
    return choose(
        pick(ATOMS),
        surrogates(),
        controls(),
        st.text(st.characters(codec=None), max_size=6),
        st.characters(categories=["Mn", "Me", "Cf", "Zl", "Zp", "Co", "Cn"]),
    )


@cache
def hostile_text() -> st.SearchStrategy[str]:
    """Hostile text: single atoms, atoms repeated up to 10,000 times, mixtures, random text."""
    repeated = st.tuples(_piece(), pick(REPEATS)).map(lambda pair: pair[0] * pair[1])
    mixed = st.lists(_piece(), min_size=2, max_size=8).map("".join)
    return choose(pick(ATOMS), repeated, mixed, st.text(max_size=40))


@cache
def hostile_number() -> st.SearchStrategy[Any]:
    """Numbers JSON can spell but Python or the schema cannot take, and some it can."""
    return choose(
        pick(RAW_NUMBERS).map(Raw),
        st.integers(),
        st.integers(-(2**70), 2**70),
        st.floats(),
        pick((0, 1, -1, 8, 63, 64, 65, 128, 129, 4, 30, 100, 2**32, -(2**31))),
    )


@cache
def deep_json() -> st.SearchStrategy[Raw]:
    """Arrays, objects or a mix of both nested up to 30,000 levels."""

    def build(kind: str, depth: int) -> Raw:
        if kind == "array":
            return Raw("[" * depth + "]" * depth)
        if kind == "object":
            return Raw('{"a":' * depth + "1" + "}" * depth)
        return Raw('[{"a":' * (depth // 2) + "null" + "}]" * (depth // 2))

    return st.builds(build, pick(("array", "object", "mixed")), pick(DEPTHS))


@cache
def wrong_type() -> st.SearchStrategy[Any]:
    """Values of every JSON type but the expected one, small and odd."""
    return choose(
        pick((None, True, False, [], {}, "", [None], {"": None}, [[[]]], {"a": []})),
        st.lists(choose(hostile_text(), hostile_number()), max_size=3),
        st.dictionaries(hostile_text(), hostile_text(), max_size=2),
    )


@cache
def any_value() -> st.SearchStrategy[Any]:
    """Anything JSON can carry, hostile first."""
    return choose(hostile_text(), hostile_number(), wrong_type(), deep_json())


def dump(value: Any, ascii_only: bool = True) -> str:
    """JSON text for `value`; `Raw` verbatim, `Pairs` as an object with repeatable keys."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        items = (f"{dump(str(k), ascii_only)}:{dump(v, ascii_only)}" for k, v in value)
        return "{" + ",".join(items) + "}"
    if isinstance(value, dict):
        return dump(Pairs(value.items()), ascii_only)
    if isinstance(value, list):
        return "[" + ",".join(dump(item, ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def encode(text: str) -> bytes:
    """UTF-8 bytes of `text`, lone surrogates as their (invalid) three-byte forms."""
    return text.encode("utf-8", "surrogatepass")


@cache
def header_value() -> st.SearchStrategy[bytes]:
    """A header value as raw bytes: hostile text in UTF-8, latin-1 bytes, huge or empty."""
    text = hostile_text().map(encode)
    raw = choose(pick(INVALID_UTF8), st.binary(max_size=24))
    value = choose(text, raw, st.tuples(text, raw).map(b"".join))
    # requests refuses CR/LF (header injection) and leading whitespace; gunicorn answers 400
    # itself for other control characters, so half the values lose them and reach the app.
    return st.tuples(value, dice()).map(lambda pair: _header_safe(pair[0], pair[1].random() < 0.5))


def _header_safe(value: bytes, reach_the_app: bool) -> bytes:
    if reach_the_app:
        value = bytes(b for b in value if b >= 0x20 and b != 0x7F)
    return value.replace(b"\r", b"").replace(b"\n", b"").lstrip()


PATH_PARTS = (
    "%ED%A0%80", "%ED%B0%80", "%ED%A0%BD%ED%B8%80", "%FF", "%FE%FF", "%C0%AF", "%C0%AE%C0%AE",
    "%00", "%0A", "%0D%0A", "%7F", "%C2%85", "%E2%80%AE", "%EF%BB%BF", "%F0%9F%98%80",
    "..", ".", "...", "%2E", "%2E%2E", "%2e%2e%2f", "%2F", "a%2Fb", "a%5Cb", "%5C", "%25", "%",
    "%zz", "%2", "~", "+", "%20", "%09", "null", "undefined", "-1", "0", "00", "%30", "1e3",
    "0x1", "%D9%A1", "99999999999999999999999999999999", "demo", "demo%00", "dall-e-3",
    "x" * 200, "x" * 3000, "A" * 22, "AAAAAAAAAAAAAAAAAAAAA-", "_" * 22,
)  # fmt: skip


@cache
def path_part() -> st.SearchStrategy[str]:
    """A path segment, already percent-encoded as it goes on the wire (odd bytes included)."""
    encoded = st.tuples(hostile_text(), pick(("", "/", ".~", "/%"))).map(
        lambda pair: quote(encode(pair[0])[:3000], safe=pair[1])
    )
    return choose(pick(PATH_PARTS), encoded, pick(PATH_PARTS).map(str.upper))
