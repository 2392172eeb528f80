"""What the rest of Conveyor needs of the expression conversion without importing sqlglot (~40 ms of
every command's start-up): the engines' sqlglot dialect names, and the error of an expression that does
not convert. ``dialects`` does the converting."""

from __future__ import annotations

#: Conveyor engine name -> sqlglot dialect
SQLGLOT = {"postgresql": "postgres", "mysql": "mysql", "sqlite": "sqlite"}


class NotConvertible(Exception):
    """An expression that does not transpile cleanly; ``str()`` is the reason."""
