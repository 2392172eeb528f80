"""The assessment report of a schema conversion: every object, its status, and what to do about it.

Statuses and effort levels follow AWS SCT's assessment report: an object is *converted*, *converted
with warnings* (it exists on the target but differs), or *needs action* (it, or a part of it, was not
created); each issue says why, shows the source, recommends a fix and grades the effort.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Status(StrEnum):
    CONVERTED = "converted"
    WARNINGS = "converted with warnings"
    ACTION = "needs action"


class Effort(StrEnum):
    SIMPLE = "simple"
    MEDIUM = "medium"
    SIGNIFICANT = "significant"


@dataclass(frozen=True, slots=True)
class Issue:
    reason: str
    source: str  # the source snippet
    fix: str
    effort: Effort
    #: True: something was not created on the target (needs action); False: created, but it differs
    action: bool = True


@dataclass(slots=True)
class Item:
    kind: str  # table, view, index, foreign key, sequence, enum, trigger, procedure, function
    name: str  # source name
    target: str = ""  # target name ("" when nothing was created)
    issues: list[Issue] = field(default_factory=list)

    @property
    def status(self) -> Status:
        if any(i.action for i in self.issues):
            return Status.ACTION
        return Status.WARNINGS if self.issues else Status.CONVERTED

    def add(self, reason: str, source: str, fix: str, effort: Effort = Effort.SIMPLE, action: bool = True) -> None:
        self.issues.append(Issue(reason, source, fix, effort, action))


@dataclass(slots=True)
class Report:
    source: str  # engine names
    target: str
    items: list[Item] = field(default_factory=list)

    def item(self, kind: str, name: str, target: str = "") -> Item:
        found = Item(kind, name, target)
        self.items.append(found)
        return found

    def counts(self) -> dict[str, int]:
        return {s.value: sum(1 for i in self.items if i.status is s) for s in Status}

    def to_json(self) -> dict[str, Any]:
        return {
            "source_engine": self.source,
            "target_engine": self.target,
            "summary": self.counts(),
            "objects": [
                {
                    "kind": i.kind,
                    "name": i.name,
                    "target": i.target,
                    "status": i.status.value,
                    "issues": [asdict(x) | {"effort": x.effort.value} for x in i.issues],
                }
                for i in self.items
            ],
        }

    def write(self, folder: Path) -> tuple[Path, Path]:
        """``conversion-report.json`` and ``conversion-report.html`` in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        as_json, as_html = folder / "conversion-report.json", folder / "conversion-report.html"
        as_json.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        as_html.write_text(render_html(self), encoding="utf-8")
        return as_json, as_html


STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}
th,td{border:1px solid #ccc;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} pre{margin:0;white-space:pre-wrap;font-size:.85em;max-height:12em;overflow:auto}
.converted{color:#1a7f37}.converted-with-warnings{color:#9a6700}.needs-action{color:#cf222e;font-weight:600}
"""


def render_html(report: Report) -> str:
    """A self-contained page: a summary, then every object with its issues."""
    import html  # here: its entity table costs a run that plans tables with this module ~6 ms

    e = html.escape
    counts = report.counts()
    summary = "".join(f"<tr><td class='{_css(s)}'>{e(s)}</td><td>{n}</td></tr>" for s, n in counts.items())
    rows = []
    for item in report.items:
        status = item.status.value
        issues = "".join(
            f"<tr><td></td><td colspan='2'>{e(i.reason)}</td><td><pre>{e(i.source)}</pre></td>"
            f"<td>{e(i.fix)}</td><td>{e(i.effort.value)}</td></tr>"
            for i in item.issues
        )
        rows.append(
            f"<tr><td>{e(item.kind)}</td><td>{e(item.name)}</td><td>{e(item.target)}</td>"
            f"<td colspan='3' class='{_css(status)}'>{e(status)}</td></tr>{issues}"
        )
    title = f"Schema conversion {e(report.source)} to {e(report.target)}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head>"
        f"<body><h1>{title}</h1><table><tr><th>Status</th><th>Objects</th></tr>{summary}</table>"
        "<table><tr><th>Kind</th><th>Source object</th><th>Target object</th><th>Status / source</th>"
        f"<th>Recommended fix</th><th>Effort</th></tr>{''.join(rows)}</table></body></html>\n"
    )


def _css(status: str) -> str:
    return status.replace(" ", "-")
