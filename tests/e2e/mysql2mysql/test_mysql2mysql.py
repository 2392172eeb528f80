from pathlib import Path

from alltypes import MYSQL, check_pair


def test_all_types_mysql2mysql(mysql_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, dst = mysql_server.create_database("m2m_src"), mysql_server.create_database("m2m_dst")
    check_pair(MYSQL, src, dst, "mysql", tmp_path)
