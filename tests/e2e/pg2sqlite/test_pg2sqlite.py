from pathlib import Path

from alltypes import POSTGRES, as_time, check_pair, decimal_text, f32


def test_all_types_pg2sqlite(pg_url: str, sqlite_url: str, tmp_path: Path) -> None:
    check_pair(
        POSTGRES,
        pg_url,
        sqlite_url,
        "sqlite",
        tmp_path,
        target_normalize={"tm": as_time, "num": decimal_text, "m": decimal_text, "f4": f32},
        source_normalize={"f4": f32},
    )
