"""Canonical hashing of values and of code; the environment fingerprint of a task."""
