from pathlib import Path

from alltypes import SQLITE, check_pair


def test_all_types_sqlite2sqlite(tmp_path: Path) -> None:
    check_pair(SQLITE, f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}", "sqlite", tmp_path)
