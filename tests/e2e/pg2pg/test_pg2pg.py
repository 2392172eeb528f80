from pathlib import Path

from alltypes import POSTGRES, check_pair


def test_all_types_pg2pg(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, dst = pg_server.create_database("pg2pg_src"), pg_server.create_database("pg2pg_dst")
    check_pair(POSTGRES, src, dst, "postgresql", tmp_path)
