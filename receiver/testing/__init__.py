"""Stand-ins for tests and demos: the GBG GO simulator."""
