"""Plain-language text for JSON problems: decode errors, JSON type names, field paths.

Everything here renders user input for people, so it escapes control characters and lone
surrogates and truncates: an error body must itself be valid, storable JSON (no U+0000).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson

_SNIPPET_RADIUS = 30
_TOKEN = re.compile(r'[^\s,:\[\]{}"]+')
_CONTROL = {code: f"\\u{code:04x}" for code in (*range(0x20), 0x7F)}
_NOT_JSON_NUMBERS = frozenset({"NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"})


def display(text: str, limit: int = 40) -> str:
    """`text` made safe to quote in a message: escaped control characters, at most `limit` chars."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    escaped = text.translate(_CONTROL)
    # Lone surrogates (only possible in Python-built input) cannot be encoded as UTF-8.
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (type(None), "null"),
    (bool, "a boolean"),  # before int: bool is an int subclass
    (int, "an integer"),
    (str, "a string"),
    (list, "an array"),
    (tuple, "an array"),
    (dict, "an object"),
)


def json_type(value: object) -> str:
    """The JSON type of a decoded value, with an article, for 'got ...' phrases."""
    if isinstance(value, float):
        return f"a floating-point number ({value!r})"
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}, which is not a JSON value"


def render_path(loc: Sequence[str | int]) -> str:
    """A field path for people: `Survey.question1`, `Proposal[0].price`; '' for the whole body."""
    parts: list[str] = []
    for segment in loc:
        if isinstance(segment, int):
            parts.append(f"[{segment}]")
        else:
            parts.append(("." if parts else "") + display(segment, 64))
    return "".join(parts)


def describe_decode_error(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """One sentence saying why `raw` is not JSON and where it breaks."""
    if not raw.strip():
        return "Malformed JSON: the body is empty; send a JSON object."
    if raw.startswith(b"\xef\xbb\xbf"):
        return (
            "Malformed JSON: the body starts with a UTF-8 byte order mark (BOM), "
            "which JSON does not allow; send the JSON without it."
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        line = raw.count(b"\n", 0, bad.start) + 1
        return (
            f"Malformed JSON: the body is not valid UTF-8: byte 0x{raw[bad.start]:02x} "
            f"at byte offset {bad.start} (line {line}) cannot be decoded."
        )
    doc, pos = exc.doc, exc.pos
    where = f"line {exc.lineno}, column {exc.colno} (character {pos})"
    if pos >= len(doc):
        return f"Malformed JSON at {where}: {exc.msg}, at the end of the body."
    match = _TOKEN.match(doc, pos, pos + _SNIPPET_RADIUS)
    token = match.group() if match else doc[pos]
    start, end = max(0, pos - _SNIPPET_RADIUS), min(len(doc), pos + _SNIPPET_RADIUS)
    snippet = (
        ("..." if start else "")
        + display(doc[start:end], 2 * _SNIPPET_RADIUS)
        + ("..." if end < len(doc) else "")
    )
    hint = " (NaN and Infinity are not JSON numbers)" if token in _NOT_JSON_NUMBERS else ""
    return f"Malformed JSON at {where}: {exc.msg}, at `{display(token)}`{hint} in `{snippet}`."


def summarise(prefix: str, problems: Sequence[tuple[str, str]], shown: int = 5) -> str:
    """One sentence listing `(path, problem)` pairs, the first `shown` of them in full."""
    parts = [f"{path} {problem}" if path else problem for path, problem in problems[:shown]]
    rest = len(problems) - shown
    if rest > 0:
        parts.append(f"and {rest} more problem{'s' if rest > 1 else ''} (see errors)")
    return f"{prefix}: {'; '.join(parts)}."
