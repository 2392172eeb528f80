"""AWS DMS table mappings: which tables move, and how they are named on the target."""
