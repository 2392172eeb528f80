"""DMS's object-locator wildcards: ``%`` any run of characters, ``_`` any one, ``[_]`` a literal ``_``."""

from __future__ import annotations

import re


def wildcard(pattern: str) -> re.Pattern[str]:
    """DMS wildcard -> regular expression."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("[_]", i):
            out.append("_")
            i += 3
            continue
        ch = pattern[i]
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)
