"""Tables of a SQLite database, from its PRAGMAs."""

from __future__ import annotations

import sqlite3

from conveyor.endpoints.sqlite.connect import quote
from conveyor.endpoints.sqlite.types import to_logical
from conveyor.errors import UserActionError
from conveyor.model.schema import Column, ForeignKey, Index, Key, Table, TableId
from conveyor.model.types import LogicalType

SCHEMA = "main"


class SQLiteIntrospector:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def schemas(self) -> list[str]:
        return [SCHEMA]

    def close(self) -> None:
        self.conn.close()

    def table_ids(self, schema: str) -> list[TableId]:
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "AND name NOT LIKE 'conveyor\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall()
        return [TableId(SCHEMA, r[0]) for r in rows]

    def table(self, table_id: TableId) -> Table:
        q = quote(table_id.name)
        info = self.conn.execute(f"PRAGMA table_xinfo({q})").fetchall()
        if not info:
            raise UserActionError(f"table {table_id} does not exist in the SQLite source")
        pk_cols = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
        create_sql = (
            self.conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table_id.name,)
            ).fetchone()[0]
            or ""
        )
        columns = []
        for _cid, name, declared, notnull, default, pk, hidden in info:
            if hidden not in (0,):  # generated and hidden columns are not data to copy
                continue
            ctype = to_logical(declared)
            rowid_alias = len(pk_cols) == 1 and pk == 1 and (declared or "").upper() == "INTEGER"
            columns.append(
                Column(
                    name,
                    ctype,
                    nullable=not notnull and not rowid_alias,
                    default=default,
                    identity=rowid_alias and ctype.logical is LogicalType.INTEGER,
                )
            )
        uniques, indexes = [], []
        for _seq, name, unique, origin, _partial in self.conn.execute(f"PRAGMA index_list({q})").fetchall():
            cols = tuple(r[2] for r in self.conn.execute(f"PRAGMA index_info({quote(name)})").fetchall())
            if origin == "pk" or any(c is None for c in cols):
                continue  # expression indexes belong to schema conversion
            if origin == "u":
                if name.startswith("sqlite_autoindex_"):  # SQLite's own name; reserved elsewhere too
                    name = f"{table_id.name}_{'_'.join(cols)}_key"
                uniques.append(Key(name, cols))
            else:
                indexes.append(Index(name, cols, bool(unique)))
        fks: dict[int, list[tuple[str, str, str, str, str]]] = {}
        for fid, _seq, ref, frm, to, on_update, on_delete, _match in self.conn.execute(
            f"PRAGMA foreign_key_list({q})"
        ).fetchall():
            fks.setdefault(fid, []).append((ref, frm, to, on_update, on_delete))
        foreign_keys = []
        for fid, parts in sorted(fks.items()):
            ref = parts[0][0]
            ref_cols = tuple(p[2] for p in parts)
            if any(c is None for c in ref_cols):  # REFERENCES t without columns means its primary key
                ref_cols = tuple(self.table(TableId(SCHEMA, ref)).row_key())
            foreign_keys.append(
                ForeignKey(
                    f"fk_{table_id.name}_{fid}",
                    tuple(p[1] for p in parts),
                    TableId(SCHEMA, ref),
                    ref_cols,
                    parts[0][4],
                    parts[0][3],
                )
            )
        return Table(
            table_id,
            tuple(columns),
            primary_key=Key("PRIMARY", tuple(pk_cols)) if pk_cols else None,
            unique_keys=tuple(uniques),
            indexes=tuple(indexes),
            foreign_keys=tuple(foreign_keys),
            extra={"without_rowid": str("WITHOUT ROWID" in create_sql.upper())},
        )
