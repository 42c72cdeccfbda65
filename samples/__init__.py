"""Bundled sample clips with ground truth, and the deterministic generator that makes them (generate.py)."""
