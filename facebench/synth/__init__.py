"""Synthetic face data set generator: the embedded default data (no torch)."""
