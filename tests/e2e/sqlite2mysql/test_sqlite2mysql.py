from pathlib import Path

from alltypes import SQLITE, check_pair, decimal_text


def test_all_types_sqlite2mysql(sqlite_url: str, mysql_url: str, tmp_path: Path) -> None:
    check_pair(
        SQLITE,
        sqlite_url,
        mysql_url,
        "mysql",
        tmp_path,
        source_normalize={"dbig": decimal_text, "dyn": str},
        target_normalize={"dbig": decimal_text},
    )
