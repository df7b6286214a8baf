"""Evaluators for any Hugging Face model: LM perplexity, GLUE-style tasks, latency, reports."""

__version__ = "0.1.0"
