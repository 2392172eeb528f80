from pathlib import Path

from alltypes import POSTGRES, as_time, bit_text, check_pair, decimal_text, f32, rstrip


def test_all_types_pg2mysql(pg_url: str, mysql_url: str, tmp_path: Path) -> None:
    check_pair(
        POSTGRES,
        pg_url,
        mysql_url,
        "mysql",
        tmp_path,
        target_normalize={
            "bt": bit_text(4),
            "tm": as_time,
            "num": decimal_text,
            "f4": f32,
            "c": rstrip,
            "iv": str,
            "vbt": str,
        },
        source_normalize={"f4": f32, "c": rstrip},
    )
