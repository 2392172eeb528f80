"""Runs tasks: the only code that writes checkpoints and statistics."""
