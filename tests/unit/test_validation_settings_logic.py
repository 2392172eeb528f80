"""ValidationSettings' pure logic: CDC re-validation delays and table suspension (``intask.Recheck``), the
value rules that redo masks and LOB cuts, ValidationState from the counts, and the settings' parsing."""

from __future__ import annotations

import pytest

from conveyor.errors import ConfigError
from conveyor.runner.settings import parse_settings
from conveyor.transform.lobs import clip
from conveyor.transform.masking import DIGITS_MASK, HASH_MASK, Mask
from conveyor.validate.compare import RECORD_DIFF, RowFailure
from conveyor.validate.intask import Recheck
from conveyor.validate.run import (
    MISMATCHED,
    PENDING,
    SUSPENDED,
    TABLE_ERROR,
    VALIDATED,
    ValueRule,
    key_bytes,
    validation_state,
)


def _diff(key: int) -> RowFailure:
    return RowFailure(RECORD_DIFF, (("id", str(key)),), (("name", "a", "b"),))


def test_changed_rows_wait_the_query_delay() -> None:
    r = Recheck(delay=3.0)
    r.changed([(1,)], now=0.0)
    r.changed([(2,)], now=2.0)
    assert r.due(now=2.9, limit=10) == [] and r.pending == 2
    assert r.due(now=3.0, limit=10) == [(1,)]
    r.changed([(2,)], now=4.0)  # changed again: waits from its latest change
    assert r.due(now=5.5, limit=10) == []
    assert r.due(now=7.0, limit=10) == [(2,)]


def test_a_difference_is_a_failure_only_after_the_failure_delay() -> None:
    r = Recheck(failure_delay=60.0)
    r.changed([(1,)], now=0.0)
    assert r.due(now=0.0, limit=10) == [(1,)]
    r.observed((1,), _diff(1), 0.1, lambda at: True)
    assert r.due(now=1.2, limit=10) == []  # not read again before it has differed for the delay
    assert r.due(now=60.1, limit=10) == [(1,)]
    r.observed((1,), _diff(1), 60.1, lambda at: at == 0.1)
    assert r.failures == {(1,): _diff(1)} and r.pending == 0

    # equal again within the delay: never a failure
    r.changed([(2,)], now=100.0)
    r.due(now=100.0, limit=10)
    r.observed((2,), _diff(2), 100.0, lambda at: True)
    r.observed((2,), _diff(2), 130.0, lambda at: True)  # a read before the delay has passed: still pending
    assert (2,) not in r.failures and r.pending == 1
    r.observed((2,), None, 160.0, lambda at: True)
    assert (2,) not in r.failures and r.pending == 0


def test_a_table_over_its_failure_limit_is_suspended_after_the_delay() -> None:
    r = Recheck()
    r.failures = {(1,): _diff(1), (2,): _diff(2)}
    assert not r.over_limit(2, 10.0, now=0.0) and r.over_since is None
    r.failures[(3,)] = _diff(3)
    r.changed([(7,)], now=0.0)
    assert not r.over_limit(2, 10.0, now=1.0) and r.over_since == 1.0
    del r.failures[(3,)]
    assert not r.over_limit(2, 10.0, now=2.0) and r.over_since is None  # back under: the delay starts over
    r.failures[(3,)] = _diff(3)
    assert not r.over_limit(2, 10.0, now=3.0)
    assert r.over_limit(2, 10.0, now=13.0) and r.stopped
    # the waiting key is suspended, failures are kept, later changes are counted and never read
    assert (r.suspended, r.pending, len(r.failures)) == (1, 0, 3)
    r.changed([(8,), (9,)], now=14.0)
    assert r.suspended == 3 and r.due(now=20.0, limit=10) == []
    assert not r.over_limit(2, 10.0, now=30.0)  # suspended once


def test_value_rules_redo_the_mask_on_the_source_and_the_cut_on_both_sides() -> None:
    text = "xx" + "€" * 400
    cut = ValueRule(None, 1024)
    assert cut.python(text, True) == cut.python(text, False) == clip(text, 1024)
    assert len(cut.python(text, True).encode()) == 1022  # the euro sign cut in two is dropped
    assert cut.python(b"\x01" * 2000, False) == b"\x01" * 1024 and cut.python(None, True) is None
    masked = ValueRule(Mask(0, DIGITS_MASK, "*"), 0)
    assert masked.python("A1-2", True) == "A*-*" and masked.python("A*-*", False) == "A*-*"
    hashed = ValueRule(Mask(0, HASH_MASK), 0)
    assert hashed.python("abc", True) == "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"


def test_validation_state_from_the_counts() -> None:
    assert validation_state(True, True, 1, 1, 1) == TABLE_ERROR
    assert validation_state(False, True, 5, 0, 0) == SUSPENDED
    assert validation_state(False, False, 1, 1, 1) == MISMATCHED
    assert validation_state(False, False, 0, 1, 1) == PENDING
    assert validation_state(False, False, 0, 0, 1) == SUSPENDED
    assert validation_state(False, False, 0, 0, 0) == VALIDATED


def test_key_bytes_count_utf8() -> None:
    failure = RowFailure(RECORD_DIFF, (("a", "é" * 10), ("b", None), ("c", "12")))
    assert key_bytes(failure) == 22


def test_validation_settings_parse() -> None:
    settings, warnings = parse_settings(
        {
            "ValidationSettings": {
                "ValidationMode": "GROUP_LEVEL",
                "TableFailureMaxCount": 5,
                "ValidationPartialLobSize": 32,
                "HandleCollationDiff": True,
            }
        }
    )
    v = settings.ValidationSettings
    assert (v.ValidationMode, v.TableFailureMaxCount, v.ValidationPartialLobSize) == ("GROUP_LEVEL", 5, 32)
    (warning,) = warnings
    assert warning.startswith("settings.ValidationSettings.HandleCollationDiff is ignored: ") and "collation" in warning
    with pytest.raises(ConfigError, match="ValidationMode"):
        parse_settings({"ValidationSettings": {"ValidationMode": "COLUMN_LEVEL"}})
    with pytest.raises(ConfigError, match="MaxKeyColumnSize"):
        parse_settings({"ValidationSettings": {"MaxKeyColumnSize": 0}})
