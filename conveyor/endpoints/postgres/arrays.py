"""PostgreSQL array literals for batch apply's column arrays, built with string operations; and columns of
texts joined into one text the server splits (``joined_texts``: no literal to parse at all).

psycopg dumps a list element by element with a regular expression for the quoting, which made up a
third of change processing's time. Here a column's values become one ``{...}`` literal (sent as an
untyped parameter and cast by the statement) when every value is of a type whose text form is
simple to state exactly; otherwise the list goes to psycopg as it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

#: a column of texts sent as one text, cut back into them by ``string_to_array(text, SEPARATOR, NULL)``:
#: control characters that JSON text never holds raw (``joined_texts``)
SEPARATOR, NULL = "\x1e", "\x1f"


def joined_texts(values: Sequence[Any]) -> str | None:
    """Texts and Nones as one text that ``string_to_array(text, SEPARATOR, NULL)`` cuts back into exactly
    them (PostgreSQL parses no literal, no quotes nor escapes); None when it would not: a value is not a
    str or holds ``SEPARATOR`` or ``NULL`` (counted in C), or the text is empty (no element, not an empty
    one)."""
    nulls = values.count(None)
    try:
        joined = SEPARATOR.join([NULL if v is None else v for v in values] if nulls else values)
    except TypeError:
        return None
    if not joined or joined.count(SEPARATOR) != len(values) - 1 or joined.count(NULL) != nulls:
        return None
    return joined


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _element(value: Any) -> str | None:
    """The array element for ``value``, or None when its type is not one this module states."""
    kind = type(value)
    if kind is str:
        return _quoted(value)
    if kind is int:
        return str(value)
    if kind is bool:
        return "t" if value else "f"
    if kind is Decimal:
        return str(value)  # keeps the scale; NaN and the infinities spelled as numeric reads them
    if kind is float:
        return _float(value)
    if kind is datetime or kind is date or kind is time:
        return _quoted(value.isoformat())
    if kind is Jsonb and value.dumps is None:
        return _quoted(json.dumps(value.obj))
    return None


#: stand-ins while a column of texts is joined: a PostgreSQL text never holds a NUL, so these cannot be
#: (nor contain, nor straddle) a value, which ``_text_array`` checks by counting the NULs. A column without
#: NULLs is joined with the bare NUL, which str.replace finds faster than a longer separator
_SEPARATOR = "\x00,\x00"
_NULL = "\x00N\x00"


def _text_array(values: Sequence[Any]) -> str | None:
    """A column of texts (a PostgreSQL source's own text form, or strings) as an array literal, quoted
    and escaped with a few whole-string operations instead of one call per value; None when a value
    is not a str or holds a NUL."""
    if not values:
        return "{}"
    nulls = values.count(None)
    separator = _SEPARATOR if nulls else "\x00"
    try:
        joined = separator.join([_NULL if v is None else v for v in values] if nulls else values)
    except TypeError:
        return None
    if joined.count("\x00") != separator.count("\x00") * (len(values) - 1) + 2 * nulls:
        return None
    if "\\" in joined:  # rare: ``in`` (memchr) spares the counting pass of a replace that finds nothing
        joined = joined.replace("\\", "\\\\")
    literal = '{"' + joined.replace('"', '\\"').replace(separator, '","') + '"}'
    return literal.replace('"' + _NULL + '"', "NULL") if nulls else literal


#: types whose ``str`` is an array element as it is (never quoted): integers and decimals
_BARE = frozenset({int, Decimal, type(None)})
_BOOLEAN = frozenset({bool, type(None)})
#: types whose ``isoformat`` is an element once quoted (digits and ``-:.T+``, never a quote or backslash)
_ISO = frozenset({datetime, date, time, type(None)})


def _typed_array(values: Sequence[Any]) -> str | None:
    """A column whose values are all of one of the common non-text kinds (with NULLs), converted by C
    loops; None for any other column."""
    kinds = set(map(type, values))
    nulls = type(None) in kinds
    if kinds <= _BARE:
        parts: Any = ["NULL" if v is None else str(v) for v in values] if nulls else map(str, values)
        return "{" + ",".join(parts) + "}"
    if kinds <= _BOOLEAN:
        return "{" + ",".join(["NULL" if v is None else "t" if v else "f" for v in values]) + "}"
    if kinds <= _ISO:
        if nulls:
            return "{" + ",".join("NULL" if v is None else '"' + v.isoformat() + '"' for v in values) + "}"
        return '{"' + '","'.join(v.isoformat() for v in values) + '"}'
    return None


def array_literal(values: Sequence[Any]) -> str | Sequence[Any]:
    """``values`` as a PostgreSQL array literal, or ``values`` unchanged where an element's type is
    not covered (psycopg adapts those)."""
    text = _text_array(values)
    if text is None:
        text = _typed_array(values)
    if text is not None:
        return text
    parts = []
    for value in values:
        if value is None:
            parts.append("NULL")
            continue
        element = _element(value)
        if element is None:
            return values
        parts.append(element)
    return "{" + ",".join(parts) + "}"
