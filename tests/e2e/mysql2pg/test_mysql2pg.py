from pathlib import Path

from alltypes import MYSQL, as_time, bit_text, check_pair, f32, rstrip


def test_all_types_mysql2pg(mysql_url: str, pg_url: str, tmp_path: Path) -> None:
    check_pair(
        MYSQL,
        mysql_url,
        pg_url,
        "postgresql",
        tmp_path,
        target_normalize={"f": f32, "ch": rstrip},
        source_normalize={"f": f32, "b1": bit_text(1), "b64": bit_text(64), "tm": as_time},
    )
