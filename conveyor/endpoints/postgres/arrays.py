"""PostgreSQL array literals for batch apply's column arrays, built with string operations; and columns of
texts joined into one text the server splits (``joined_texts``: no literal to parse at all); rows of
texts as COPY's text data (``copy_text``).

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
from operator import methodcaller
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


def copy_text(rows: Sequence[Sequence[Any]]) -> str | None:
    """Rows (at least one) of texts and Nones as the data of a text-format ``COPY ... FROM STDIN``; None when
    a value is not a str (or None). The rows are joined whole, a None as ``\\N``; when the joined text shows
    that some value needs an escape (a backslash not of a ``\\N``, a CR, more tabs or newlines than the joins
    put in), ``_escaped`` builds it again. A NUL goes as it is: the server rejects it as an INSERT's."""
    join = "\t".join
    counts: list[int] | None = None
    nulls = 0
    try:
        lines = list(map(join, rows))
    except TypeError:  # a None (or a value that is no text)
        counts = list(map(_none_count, rows))
        nulls = sum(counts)
        try:
            lines = [
                join(row) if not count else join(["\\N" if v is None else v for v in row])
                for row, count in zip(rows, counts, strict=True)
            ]
        except TypeError:
            return None
    lines.append("")  # the last row's newline, without copying the whole text once more
    text = "\n".join(lines)
    tabs = len(rows[0]) - 1
    split = text.count("\t") != len(rows) * tabs or text.count("\n") != len(rows)
    backslash = (text.count("\\") != nulls) if nulls else ("\\" in text)
    if not split and not backslash and "\r" not in text:
        return text
    if "\x00" in text:
        return None
    return _escaped(rows, lines, counts, split, backslash, "\r" in text)


def _escaped(
    rows: Sequence[Sequence[Any]],
    lines: list[str],
    counts: list[int] | None,
    split: bool,
    backslash: bool,
    cr: bool,
) -> str:
    """``copy_text``'s ``lines`` (no value holds a NUL) where a value needs an escape. The rows with a None
    and, when ``split`` (a value holds a tab or newline), those are joined again value by value, each None
    and escape marked by a NUL; then line by line (small strings: no copy of the whole text each time) a
    backslash is doubled, a CR written ``\\r`` and each NUL becomes the backslash."""
    join = "\t".join
    if counts is not None:
        for i in [i for i, count in enumerate(counts) if count]:
            lines[i] = join(["\x00N" if v is None else v for v in rows[i]])
    if split:
        tabs = len(rows[0]) - 1
        body = lines[:-1]
        found = zip(map(_tab_count, body), map(_has_newline, body), strict=True)
        for i in [i for i, (line_tabs, newline) in enumerate(found) if line_tabs != tabs or newline]:
            lines[i] = join([_marked(v) for v in rows[i]])
    if backslash:
        lines = list(map(_doubled_backslash, lines))
    if cr:
        lines = list(map(_escaped_cr, lines))
    if counts is not None or split:
        lines = list(map(_unmarked, lines))
    return "\n".join(lines)


_none_count = methodcaller("count", None)
_doubled_backslash = methodcaller("replace", "\\", "\\\\")
_escaped_cr = methodcaller("replace", "\r", "\\r")
_unmarked = methodcaller("replace", "\x00", "\\")
_tab_count = methodcaller("count", "\t")
_has_newline = methodcaller("__contains__", "\n")


def _marked(value: str | None) -> str:
    """A value of a row holding a tab or newline, its escapes marked by NUL (``_escaped``)."""
    if value is None:
        return "\x00N"
    return value.replace("\t", "\x00t").replace("\n", "\x00n")


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
