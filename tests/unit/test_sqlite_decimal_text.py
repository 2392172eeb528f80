"""SQLite's DECIMAL_TEXT keeps exact numbers in one text form, positional, whatever their exponent."""

from __future__ import annotations

from decimal import Decimal

from conveyor.endpoints.sqlite.types import encoder
from conveyor.model.types import ColumnType, LogicalType


def test_exact_numbers_are_written_positionally() -> None:
    encode = encoder(ColumnType(LogicalType.DECIMAL, precision=40, scale=20), "DECIMAL_TEXT(40,20)")
    assert encode is not None
    written = [encode(Decimal(v)) for v in ("0E-20", "-1E-20", "0.10000000000000000000", "1E+5", "NaN")]
    assert written == ["0.00000000000000000000", "-0.00000000000000000001", "0.10000000000000000000", "100000", "NaN"]
    assert encode(7) == "7" and encode(None) is None
    assert all(
        Decimal(text) == Decimal(v) for text, v in zip(written[:4], ("0E-20", "-1E-20", "0.1", "1E+5"), strict=True)
    )
