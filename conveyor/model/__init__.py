"""The common language of all engines: plain frozen dataclasses, no I/O."""
