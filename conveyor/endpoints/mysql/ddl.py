"""DDL statements as the binlog logs them: the tables a statement changes (``parse_ddl``) and what an
ALTER TABLE does to a table's columns (``column_changes``).

A change stream that lags behind several ALTERs of one table cannot learn each intermediate definition
from the catalog (it only has the latest), so it applies each statement's column clauses to the
definition before it. Only clauses whose effect is known exactly become changes; anything else raises
``Unfollowable`` and the stream falls back to the catalog.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from conveyor.convert.schema_change import RenameColumn
from conveyor.endpoints.mysql.types import native_name, to_logical
from conveyor.model.schema import Column, TableId
from conveyor.model.types import LogicalType as L

_TOKEN = re.compile(r"`(?:[^`]|``)*`|\"(?:[^\"]|\"\")*\"|'(?:[^'\\]|\\.|'')*'|[\w$\u0080-\uffff]+|\S", re.UNICODE)
_COMMENT = re.compile(r"/\*(?!!)[\s\S]*?\*/|/\*!\d*|\*/|--[^\n]*|#[^\n]*")


@dataclass(frozen=True, slots=True)
class Ddl:
    """What a statement does to tables: ``kind`` (alter, rename, drop, truncate, create) and the
    tables, with their new names for a rename."""

    kind: str
    tables: tuple[tuple[TableId, TableId], ...]


def tokens(sql: str) -> list[str]:
    return _TOKEN.findall(_COMMENT.sub(" ", sql))


def _ident(token: str) -> str:
    if token[:1] == "`":
        return token[1:-1].replace("``", "`")
    if token[:1] == '"':
        return token[1:-1].replace('""', '"')
    return token


def table_name(toks: list[str], i: int, database: str) -> tuple[TableId, int]:
    """A possibly qualified table name at ``toks[i]``."""
    first = _ident(toks[i])
    if i + 2 < len(toks) and toks[i + 1] == ".":
        return TableId(first, _ident(toks[i + 2])), i + 3
    return TableId(database, first), i + 1


def _skip(toks: list[str], i: int, *words: str) -> int:
    while i < len(toks) and toks[i].upper() in words:
        i += 1
    return i


def _alter_table(toks: list[str], database: str) -> tuple[TableId, int] | None:
    """The table an ALTER TABLE statement names and where its clauses start (None: another statement)."""
    if not toks or toks[0].upper() != "ALTER":
        return None
    i = _skip(toks, 1, "ONLINE", "IGNORE")
    if i >= len(toks) or toks[i].upper() != "TABLE":
        return None
    return table_name(toks, _skip(toks, i + 1, "IF", "EXISTS"), database)


def parse_ddl(sql: str, database: str) -> Ddl | None:
    """The tables a DDL statement changes (None for other statements); ``database`` is the
    session's default database, for unqualified names."""
    toks = tokens(sql)
    upper = [t.upper() for t in toks]
    if not toks:
        return None
    head = upper[0]
    try:
        if head == "ALTER":
            found = _alter_table(toks, database)
            if found is None:
                return None
            table, i = found
            new = table
            for j in range(i, len(toks) - 1):
                if upper[j] == "RENAME" and upper[j + 1] not in ("COLUMN", "INDEX", "KEY"):
                    k = _skip(toks, j + 1, "TO", "AS")
                    new, _ = table_name(toks, k, database)
            return Ddl("rename" if new != table else "alter", ((table, new),))
        if head == "RENAME":
            i = _skip(toks, 1, "TABLE", "TABLES")
            pairs = []
            while i < len(toks):
                old, i = table_name(toks, _skip(toks, i, "IF", "EXISTS"), database)
                i = _skip(toks, i, "WAIT", "NOWAIT")
                if i < len(toks) and upper[i].isdigit():
                    i += 1
                new, i = table_name(toks, _skip(toks, i, "TO"), database)
                pairs.append((old, new))
                i = _skip(toks, i, ",")
            return Ddl("rename", tuple(pairs))
        if head in ("DROP", "TRUNCATE", "CREATE"):
            i = _skip(toks, 1, "OR", "REPLACE", "TEMPORARY")
            if head != "TRUNCATE" and (i >= len(toks) or upper[i] not in ("TABLE", "TABLES")):
                return None
            i = _skip(toks, i, "TABLE", "TABLES", "IF", "NOT", "EXISTS")
            names = []
            while i < len(toks):
                table, i = table_name(toks, i, database)
                names.append((table, table))
                if head != "DROP" or i >= len(toks) or toks[i] != ",":
                    break
                i += 1
            return Ddl(head.lower(), tuple(names))
    except IndexError:
        return None
    return None


def partition_rows(sql: str, database: str) -> tuple[str, list[TableId]] | None:
    """An ALTER TABLE clause that removes rows from the table, or brings rows in, that no row event lists
    (TRUNCATE / DROP / EXCHANGE PARTITION): the clause, and the table an EXCHANGE swaps rows with."""
    toks = tokens(sql)
    upper = [t.upper() for t in toks]
    if _alter_table(toks, database) is None:
        return None
    for i in range(len(upper) - 1):
        if upper[i] in ("TRUNCATE", "DROP", "EXCHANGE") and upper[i + 1] == "PARTITION":
            others = []
            if upper[i] == "EXCHANGE" and "TABLE" in upper[i:]:
                others.append(table_name(toks, upper.index("TABLE", i) + 1, database)[0])
            return f"{upper[i]} PARTITION", others
    return None


# --------------------------------------------------------------------------- ALTER TABLE column clauses
class Unfollowable(Exception):
    """A statement whose effect on the columns is not known exactly (the message names the clause)."""


@dataclass(frozen=True, slots=True)
class Definition:
    """A column definition of ADD / CHANGE / MODIFY, and where it goes (``first``, ``after``)."""

    column: Column
    #: CHARACTER SET / COLLATE of the clause ("" for the table's default)
    charset: str = ""
    primary: bool = False
    first: bool = False
    after: str | None = None


@dataclass(frozen=True, slots=True)
class Add:
    definition: Definition
    if_not_exists: bool = False


@dataclass(frozen=True, slots=True)
class Drop:
    name: str
    if_exists: bool = False


@dataclass(frozen=True, slots=True)
class Redefine:
    """CHANGE (``old`` may differ from the new name) or MODIFY."""

    old: str
    definition: Definition
    if_exists: bool = False


@dataclass(frozen=True, slots=True)
class SetDefault:
    name: str
    default: str | None


@dataclass(frozen=True, slots=True)
class PrimaryKey:
    """ADD PRIMARY KEY (its columns become NOT NULL) or DROP PRIMARY KEY (no columns)."""

    columns: tuple[str, ...]


Clause = Add | Drop | Redefine | RenameColumn | SetDefault | PrimaryKey

#: what may follow ADD / DROP and changes no column (PRIMARY KEY is read apart)
_KEYS = frozenset({"INDEX", "KEY", "UNIQUE", "FULLTEXT", "SPATIAL", "FOREIGN", "CHECK", "CONSTRAINT", "VECTOR"})
#: table options that change no column, with their value (FORCE has none)
_TABLE_OPTIONS = frozenset(
    {
        "ENGINE",
        "AUTO_INCREMENT",
        "AVG_ROW_LENGTH",
        "CHECKSUM",
        "COMMENT",
        "COMPRESSION",
        "DELAY_KEY_WRITE",
        "KEY_BLOCK_SIZE",
        "MAX_ROWS",
        "MIN_ROWS",
        "PACK_KEYS",
        "ROW_FORMAT",
        "STATS_AUTO_RECALC",
        "STATS_PERSISTENT",
        "STATS_SAMPLE_PAGES",
        "PAGE_CHECKSUM",
        "TRANSACTIONAL",
        "ALGORITHM",
        "LOCK",
    }
)
_INTEGER_ATTRIBUTES = ("UNSIGNED", "SIGNED", "ZEROFILL")
#: column attributes followed by one word or literal that does not matter here
_VALUED_ATTRIBUTES = frozenset({"COMMENT", "COLUMN_FORMAT", "STORAGE", "SRID"})
_FLAGS = frozenset({"INVISIBLE", "VISIBLE", "UNIQUE", "BINARY"})


def column_changes(sql: str) -> list[Clause]:
    """What an ALTER TABLE statement does to the columns, clause by clause (RENAME TABLE: nothing);
    ``Unfollowable`` names the first clause whose effect is not known exactly."""
    toks = tokens(sql)
    if toks[:1] and toks[0].upper() == "RENAME":
        return []
    found = _alter_table(toks, "")
    if found is None:
        raise Unfollowable("not an ALTER TABLE statement")
    i = found[1]
    if i < len(toks) and toks[i].upper() == "NOWAIT":
        i += 1
    elif i < len(toks) and toks[i].upper() == "WAIT":
        i += 2
    changes: list[Clause] = []
    for clause in _split(toks[i:]):
        try:
            changes += _clause(clause)
        except (IndexError, ValueError):
            raise Unfollowable(_text(clause)) from None
    return changes


def _split(toks: list[str]) -> list[list[str]]:
    """Tokens split at the commas outside parentheses."""
    parts: list[list[str]] = [[]]
    depth = 0
    for token in toks:
        if token == "," and depth == 0:
            parts.append([])
            continue
        depth += {"(": 1, ")": -1}.get(token, 0)
        parts[-1].append(token)
    return [p for p in parts if p]


def _group(toks: list[str], i: int) -> int:
    """The index after the parenthesised group opening at ``toks[i]``."""
    if toks[i] != "(":
        raise ValueError("no parenthesis")
    depth = 0
    for j in range(i, len(toks)):
        depth += {"(": 1, ")": -1}.get(toks[j], 0)
        if depth == 0:
            return j + 1
    raise ValueError("unbalanced parentheses")


def _text(toks: list[str]) -> str:
    """Tokens as SQL text: words apart, punctuation close (``decimal(14,2) unsigned``)."""
    out = ""
    for i, token in enumerate(toks):
        close = token in "(),." or (i > 0 and toks[i - 1] in "(,.")
        unary = i > 0 and toks[i - 1] in "+-" and (i == 1 or toks[i - 2] in "(,")
        out += token if not out or close or unary else " " + token
    return out


def _word(token: str) -> str:
    """An unquoted word in upper case; quoted names and literals are never keywords."""
    return token.upper() if token[:1] not in "`'\"" else ""


def _clause(c: list[str]) -> list[Clause]:
    head = _word(c[0])
    if head == "ADD":
        return _add(c[1:])
    if head == "DROP":
        return _drop(c[1:])
    if head in ("CHANGE", "MODIFY"):
        i = _skip(c, 1, "COLUMN")
        if_exists = _word(c[i]) == "IF" and _word(c[i + 1]) == "EXISTS"
        i += 2 if if_exists else 0
        old = _ident(c[i])
        if head == "CHANGE":
            i += 1
        return [Redefine(old, _definition(c[i:]), if_exists)]
    if head == "RENAME":
        if _word(c[1]) == "COLUMN" and len(c) == 5 and _word(c[3]) == "TO":
            return [RenameColumn(_ident(c[2]), _ident(c[4]))]
        if _word(c[1]) in ("INDEX", "KEY", "TO", "AS") or len(c) in (2, 4):
            return []  # an index, or the table (see parse_ddl)
    if head == "ALTER":
        return _alter_column(c[1:])
    if head in ("FORCE", "ENABLE", "DISABLE") and len(c) == (1 if head == "FORCE" else 2):
        return []
    if head in _TABLE_OPTIONS:
        return _options(c)
    raise Unfollowable(_text(c))


def _add(c: list[str]) -> list[Clause]:
    if _word(c[0]) == "PRIMARY" or (_word(c[0]) == "CONSTRAINT" and "PRIMARY" in map(_word, c[:3])):
        start = c.index("(")
        return [PrimaryKey(tuple(_ident(part[0]) for part in _split(c[start + 1 : _group(c, start) - 1])))]
    if _word(c[0]) in _KEYS:
        return []
    i = _skip(c, 0, "COLUMN")
    if_not_exists = _word(c[i]) == "IF"
    if if_not_exists:
        if [_word(t) for t in c[i + 1 : i + 3]] != ["NOT", "EXISTS"]:
            raise ValueError("IF without NOT EXISTS")
        i += 3
    if c[i] != "(":
        return [Add(_definition(c[i:]), if_not_exists)]
    if _group(c, i) != len(c):
        raise ValueError("text after the column list")
    return [Add(_definition(part), if_not_exists) for part in _split(c[i + 1 : -1])]


def _drop(c: list[str]) -> list[Clause]:
    head = _word(c[0])
    if head == "PRIMARY":
        return [PrimaryKey(())]
    if head in _KEYS:
        return []
    i = _skip(c, 0, "COLUMN")
    if_exists = _word(c[i]) == "IF" and _word(c[i + 1]) == "EXISTS"
    i += 2 if if_exists else 0
    if _skip(c, i + 1, "RESTRICT", "CASCADE") != len(c) or head in ("PARTITION", "SYSTEM", "PERIOD"):
        raise ValueError("not a column")
    return [Drop(_ident(c[i]), if_exists)]


def _alter_column(c: list[str]) -> list[Clause]:
    """ALTER [COLUMN] c SET DEFAULT x | DROP DEFAULT | SET [IN]VISIBLE; ALTER INDEX / CHECK ...: none."""
    if _word(c[0]) in ("INDEX", "KEY", "CHECK", "CONSTRAINT"):
        return []
    i = _skip(c, 0, "COLUMN")
    name, rest = _ident(c[i]), [_word(t) for t in c[i + 1 :]]
    if rest == ["DROP", "DEFAULT"]:
        return [SetDefault(name, None)]
    if rest[:1] == ["SET"] and rest[1:] in (["VISIBLE"], ["INVISIBLE"]):
        return []
    if rest[:2] == ["SET", "DEFAULT"]:
        default, end = _expression(c, i + 3)
        if end == len(c):
            return [SetDefault(name, default)]
    raise ValueError("not a column default")


def _options(c: list[str]) -> list[Clause]:
    """Table options (ENGINE=InnoDB ROW_FORMAT=DYNAMIC ...): no column changes. A character set
    option is not one of them: it changes the table's default for the columns defined later."""
    i = 0
    while i < len(c):
        if _word(c[i]) not in _TABLE_OPTIONS:
            raise Unfollowable(_text(c[i:]))
        i = _skip(c, i + 1, "=") + 1
    return []


def _expression(c: list[str], i: int) -> tuple[str | None, int]:
    """A DEFAULT value from ``c[i]``: a literal, a signed number, a word (CURRENT_TIMESTAMP), a call
    or a parenthesised expression; None for NULL."""
    start = i
    if c[i] in ("-", "+"):
        i += 1
    if c[i] != "(":
        i += 1
    if i + 1 < len(c) and c[i] == "." and c[i + 1][:1].isdigit():
        i += 2  # a decimal number
    if i < len(c) and c[i] == "(":
        i = _group(c, i)
    text = _text(c[start:i])
    return (None if text.upper() == "NULL" else text), i


def _definition(c: list[str]) -> Definition:
    """``name type [attributes] [FIRST | AFTER col]``; the type must map exactly (``types.to_logical``)."""
    name = _ident(c[0])
    if not _word(c[1]):
        raise ValueError("no type")
    i = 3 if _word(c[1]) == "DOUBLE" and len(c) > 2 and _word(c[2]) == "PRECISION" else 2
    if i < len(c) and c[i] == "(":
        i = _group(c, i)
    while i < len(c) and _word(c[i]) in _INTEGER_ATTRIBUTES:
        i += 1
    native = _text([t if t[:1] == "'" else t.lower() for t in c[1:i]])
    ctype = to_logical(native)
    if ctype.logical is L.DYNAMIC:
        raise Unfollowable(f"column {name} {native}: a type without a logical equivalent")
    nullable, explicit_null, default, has_default, identity, primary = True, False, None, False, False, False
    charset, first, after = "", False, None
    while i < len(c):
        word = _word(c[i])
        i += 1
        if word == "NOT" and _word(c[i]) == "NULL":
            nullable, explicit_null, i = False, True, i + 1
        elif word == "NULL":
            nullable, explicit_null = True, True
        elif word == "DEFAULT":
            default, i = _expression(c, i)
            has_default = True
        elif word == "AUTO_INCREMENT":
            identity, nullable = True, False
        elif word in ("PRIMARY", "KEY"):
            primary, nullable, i = True, False, _skip(c, i, "KEY")
        elif word in ("CHARACTER", "CHARSET"):
            i = _skip(c, i, "SET", "=")
            charset, i = _ident(c[i]).lower(), i + 1
        elif word == "COLLATE":
            i = _skip(c, i, "=")
            charset = charset or _ident(c[i]).lower().split("_")[0]
            i += 1
        elif word == "ON" and _word(c[i]) == "UPDATE":
            i = _expression(c, i + 1)[1]
        elif word == "CHECK":
            i = _group(c, i)
        elif word in _VALUED_ATTRIBUTES:
            i += 1
        elif word in _FLAGS:
            pass
        elif word == "FIRST":
            first = True
        elif word == "AFTER":
            after, i = _ident(c[i]), i + 1
        else:
            raise Unfollowable(f"column {name}: {_text(c[i - 1 :])}")
    if native_name(native) == "timestamp" and not explicit_null and not has_default:
        raise Unfollowable(f"column {name} {native}: explicit_defaults_for_timestamp decides its NULL and default")
    if ctype.logical is L.JSON:
        charset = charset or "utf8mb4"  # MariaDB's JSON is a utf8mb4 longtext, whatever the table's default
    column = Column(name, ctype, nullable=nullable, default=default, identity=identity)
    return Definition(column, charset, primary, first, after)
