"""DMS's data-masking transformation actions, applied to a target column's values.

* ``data-masking-digits-mask``: every digit becomes the rule's ``value`` (one printable ASCII
  character, not a space): ``C6BGJ56669K`` -> ``C#BGJ#####K``. Deterministic.
* ``data-masking-digits-randomize``: every digit becomes a random digit, anew for each row and each
  change (as in DMS). Not deterministic.
* ``data-masking-hash-mask``: the value becomes the SHA-256 of its text (UTF-8), 64 hexadecimal
  digits in upper case. Deterministic; the target column must hold 64 characters.

Values are masked as text (``values.text``), so a masked column is a text column on the target
(change-data-type turns a number into one). NULL stays NULL; a value the change did not carry stays so.
Only the hash mask may mask a column the target finds rows by (the row key): the others can give two
rows one value, or a row a new value on each change.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConfigError
from conveyor.model.changes import UNCHANGED
from conveyor.model.rows import Row
from conveyor.model.types import ColumnType, LogicalType
from conveyor.transform.values import text

DIGITS_MASK = "data-masking-digits-mask"
DIGITS_RANDOMIZE = "data-masking-digits-randomize"
HASH_MASK = "data-masking-hash-mask"
ACTIONS = (DIGITS_MASK, DIGITS_RANDOMIZE, HASH_MASK)
HASH_LENGTH = 64
_TEXT_TYPES = (LogicalType.CHAR, LogicalType.VARCHAR, LogicalType.TEXT)
_DIGITS = str.maketrans("", "", "0123456789")


def mask_character(value: Any, rule_id: str, path: str) -> str:
    """The digits mask's character, checked as DMS checks it."""
    if not isinstance(value, str) or len(value) != 1 or not value.isascii() or not value.isprintable() or value == " ":
        raise ConfigError(
            f"rule-id {rule_id}: {DIGITS_MASK} needs a value: one printable ASCII character, not a space", path
        )
    return value


@dataclass(frozen=True)
class Mask:
    #: the column's position in the target row
    position: int
    action: str
    character: str = "#"

    def apply(self, value: Any) -> Any:
        if value is None or value is UNCHANGED:
            return value
        data = value if isinstance(value, str) else text(value)
        if self.action == HASH_MASK:
            return hashlib.sha256(data.encode()).hexdigest().upper()
        if data.translate(_DIGITS) == data:
            return data
        if self.action == DIGITS_MASK:
            return "".join(self.character if c in "0123456789" else c for c in data)
        return "".join(str(secrets.randbelow(10)) if c in "0123456789" else c for c in data)


def check_mask(rule_id: str, action: str, table: str, column: str, ctype: ColumnType, in_key: bool) -> None:
    """Refuse a mask the target column cannot hold, or one that would lose rows (rule-id and reason)."""
    where = f"rule-id {rule_id}: {table}.{column}"
    if ctype.logical not in _TEXT_TYPES:
        raise ConfigError(
            f"{where} is {ctype.describe()} on the target; a masked value is text: add a change-data-type rule "
            'to "string" for the column'
        )
    if action == HASH_MASK and ctype.length is not None and ctype.length < HASH_LENGTH:
        raise ConfigError(
            f"{where} holds {ctype.length} characters; the hash mask writes {HASH_LENGTH}: add a change-data-type "
            f'rule to "string" with length {HASH_LENGTH} or more'
        )
    if action != HASH_MASK and in_key:
        raise ConfigError(
            f"{where}: the target finds rows by this column (the table's key, or every column of a table "
            f"without one), and {action} can give two rows one value ({DIGITS_RANDOMIZE}: new digits on each "
            f"change); use {HASH_MASK} on it"
        )


def mask_row(row: Row, masks: Sequence[Mask]) -> Row:
    values = list(row)
    for mask in masks:
        values[mask.position] = mask.apply(values[mask.position])
    return tuple(values)
