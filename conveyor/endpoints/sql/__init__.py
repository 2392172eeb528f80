"""The SQL skeletons every engine fills with hooks: snapshot reader and applier."""
