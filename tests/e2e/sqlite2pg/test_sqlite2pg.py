from pathlib import Path

from alltypes import SQLITE, check_pair, decimal_text


def test_all_types_sqlite2pg(sqlite_url: str, pg_url: str, tmp_path: Path) -> None:
    check_pair(SQLITE, sqlite_url, pg_url, "postgresql", tmp_path, source_normalize={"dbig": decimal_text, "dyn": str})
