"""Validation: row-exact comparison of source and target through a task's plan, and repair."""
