"""Premigration assessment: AWS DMS's individual assessments that apply to a task's engines
(``conveyor assess``; ``conveyor run`` runs the blocking ones first). Keys and fixes: docs/assessment.md."""
