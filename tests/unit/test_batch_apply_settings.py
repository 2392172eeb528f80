"""ChangeProcessingTuning's batch apply keys: parsed, checked against each other, or named as ignored."""

from __future__ import annotations

import pytest

from conveyor.errors import ConfigError
from conveyor.runner.settings import parse_settings


def test_batch_apply_timeouts_parse_and_are_checked() -> None:
    settings, warnings = parse_settings(
        {"ChangeProcessingTuning": {"BatchApplyTimeoutMin": 2, "BatchApplyTimeoutMax": 10, "BatchApplyMemoryLimit": 64}}
    )
    tuning = settings.ChangeProcessingTuning
    assert (tuning.BatchApplyTimeoutMin, tuning.BatchApplyTimeoutMax, tuning.BatchApplyMemoryLimit) == (2, 10, 64)
    assert warnings == []
    assert parse_settings({})[0].ChangeProcessingTuning.BatchApplyTimeoutMax == 30  # DMS's default
    with pytest.raises(ConfigError, match=r"BatchApplyTimeoutMax \(5\) is less than BatchApplyTimeoutMin \(10\)"):
        parse_settings({"ChangeProcessingTuning": {"BatchApplyTimeoutMin": 10, "BatchApplyTimeoutMax": 5}})


def test_preserving_transactions_is_always_on() -> None:
    _, (warning,) = parse_settings({"ChangeProcessingTuning": {"BatchApplyPreserveTransaction": False}})
    assert warning.startswith("settings.ChangeProcessingTuning.BatchApplyPreserveTransaction is ignored: ")
    assert "whole source transactions" in warning
