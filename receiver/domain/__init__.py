"""The rules: pure functions and data, no I/O and no clock (``now`` is an argument)."""
