"""The user-facing data model: tasks, expressions and value types. No I/O, no store, no scheduler."""
