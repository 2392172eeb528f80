"""DMS's data-masking actions on pure logic: each mask, on full-load rows and on both images of a change,
and the masks refused with their rule-id and reason."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from test_mapping_rules import TABLE, mapped, tr

from conveyor.errors import ConfigError
from conveyor.model.changes import UNCHANGED, Change, Op
from conveyor.model.rows import RowBatch
from conveyor.transform.masking import Mask


def name_rule(action: str, rid: int = 2, **extra: Any) -> dict[str, Any]:
    return tr(rid, "column", action, locator={"column-name": "Name"}, **extra)


def full_load(m: Any, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [r for b in m.mapping.batches([RowBatch(TABLE.column_names, rows)]) for r in b.rows]


def test_digits_mask_is_deterministic_and_keeps_the_other_characters() -> None:
    m = mapped(name_rule("data-masking-digits-mask", value="#"))
    rows = full_load(m, [(1, "C6BGJ56669K", None, None), (2, None, None, None), (3, "no digits", None, None)])
    assert [r[1] for r in rows] == ["C#BGJ#####K", None, "no digits"]
    assert not m.mapping.raw


def test_hash_mask_is_sha256_of_the_text_in_upper_case() -> None:
    m = mapped(
        name_rule("data-masking-hash-mask", rid=3),
        name_rule("change-data-type", rid=2, **{"data-type": {"type": "string", "length": 64}}),
    )
    [row] = full_load(m, [(1, "secret", None, None)])
    assert row[1] == hashlib.sha256(b"secret").hexdigest().upper()


def test_digits_randomize_keeps_the_shape() -> None:
    m = mapped(name_rule("data-masking-digits-randomize"))
    [row] = full_load(m, [(1, "AB-1234-x9", None, None)])
    assert re.fullmatch(r"AB-\d{4}-x\d", row[1])


def test_a_change_is_masked_in_both_images_and_unsent_values_stay_unsent() -> None:
    m = mapped(name_rule("data-masking-digits-mask", value="*"))
    cols = TABLE.column_names
    change = Change(Op.UPDATE, TABLE.id, cols, (1, "a1", None, None), (1, "b22", UNCHANGED, None), 10)
    out = m.mapping.change(change)
    assert out.before[1] == "a*" and out.after[1] == "b**" and out.after[2] is UNCHANGED


def test_a_masked_number_needs_change_data_type_to_string() -> None:
    locator = {"column-name": "price"}
    with pytest.raises(ConfigError, match=r"rule-id 2: s\.my_table\.price is .*change-data-type"):
        mapped(tr(2, "column", "data-masking-digits-mask", locator=locator, value="#"))
    m = mapped(
        tr(2, "column", "data-masking-digits-mask", locator=locator, value="#"),
        tr(3, "column", "change-data-type", locator=locator, **{"data-type": {"type": "string", "length": 10}}),
    )
    [row] = full_load(m, [(1, None, 12.5, None)])
    assert row[2] == "##.#"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([name_rule("data-masking-hash-mask")], "holds 20 characters; the hash mask writes 64"),
        ([tr(2, "column", "data-masking-hash-mask", locator={"column-name": "id"})], "is integer"),
        (
            [
                tr(2, "column", "data-masking-digits-randomize", locator={"column-name": "id"}),
                tr(3, "column", "change-data-type", locator={"column-name": "id"}, **{"data-type": {"type": "string"}}),
            ],
            "the target finds rows by this column",
        ),
    ],
)
def test_masks_that_cannot_work_are_refused(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=f"rule-id 2: .*{message}"):
        mapped(*rules)


def test_the_lowest_rule_id_masks() -> None:
    m = mapped(
        name_rule("data-masking-digits-mask", rid=5, value="#"), name_rule("data-masking-digits-mask", value="@")
    )
    assert m.mapping.masks == (Mask(1, "data-masking-digits-mask", "@"),)
