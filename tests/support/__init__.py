"""Helpers shared by the tests: fakes of the Salt side and small environments built from them."""
