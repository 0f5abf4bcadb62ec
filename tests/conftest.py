"""Shared fixtures for the program's tests (helpers live in tests/support.py)."""
