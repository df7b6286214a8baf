"""ELM models, the elastic supernet, and the DeepSpeed pipeline behind the elm-train command."""

__version__ = "0.1.0"
