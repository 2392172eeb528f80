"""The statistics table ``conveyor run`` prints without --json."""

from __future__ import annotations

import pytest

from conveyor.control.cli.main import report
from conveyor.runner import stats as st
from conveyor.runner.fullload import RunResult


def test_piped_cdc_statistics_keep_every_name_and_figure_whole(capsys: pytest.CaptureFixture[str]) -> None:
    table = st.TableStats("a_schema_name", "a_rather_long_table_name", state=st.COMPLETED)
    table.inserts, table.applied_inserts, table.applied_updates, table.apply_error_rows = 10, 9, 1_234_567, 1
    report(RunResult([table], cdc=st.CdcStats(checkpoint="lsn=0/1")), as_json=False)  # stdout is not a terminal
    out = capsys.readouterr().out
    for name in ("AppliedInserts", "AppliedUpdates", "AppliedDeletes", "AppliedDdls", "ApplyErrorRows"):
        assert name in out, out
    assert "a_schema_name.a_rather_long_table_name" in out and "1,234,567" in out, out
