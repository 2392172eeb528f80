"""Endpoints: one package per engine, all filling the roles in ``base``."""
