"""Workflow modules used by the tests as source text (written into a temporary folder and run in fresh
processes), so that a test can change exactly one thing and rerun."""
