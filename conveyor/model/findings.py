"""What a pre-flight check found: one shape for ``Capture.check()`` and ``conveyor assess``.

A capture's ``preflight()`` lists every finding (a problem, or a warning the task can run with)
under the key of the AWS DMS premigration assessment that checks the same thing; ``check()``
raises the first problem, the assessment reports them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from conveyor.errors import UserActionError


@dataclass(frozen=True, slots=True)
class Finding:
    #: the assessment key, e.g. ``postgres-check-wallevel`` (see docs/assessment.md)
    key: str
    #: what is wrong, where, and the exact fix
    message: str
    #: the task can run; the user should know (otherwise the task cannot run until it is fixed)
    warning: bool = False


def enforce(findings: Iterable[Finding]) -> list[str]:
    """``check()``'s contract: the first problem raises ``UserActionError``; returns the warnings."""
    warnings = []
    for finding in findings:
        if not finding.warning:
            raise UserActionError(finding.message)
        warnings.append(finding.message)
    return warnings
