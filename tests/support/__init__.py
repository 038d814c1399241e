"""Helpers shared by several test modules (import as `from support.x import ...`; tests/ is on sys.path)."""
