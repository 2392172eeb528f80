"""Schema conversion: source tables -> target tables with mapped types."""
