"""Evolutionary and random architecture search under parameter, FLOP and latency budgets."""

__version__ = "0.1.0"
