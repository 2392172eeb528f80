from pathlib import Path

from alltypes import MYSQL, as_time, bit_text, check_pair, decimal_text, f32


def test_all_types_mysql2sqlite(mysql_url: str, sqlite_url: str, tmp_path: Path) -> None:
    check_pair(
        MYSQL,
        mysql_url,
        sqlite_url,
        "sqlite",
        tmp_path,
        target_normalize={"f": f32, "dec65": decimal_text, "biu": decimal_text, "tm": as_time},
        source_normalize={"f": f32, "b1": bit_text(1), "b64": bit_text(64), "tm": as_time},
    )
