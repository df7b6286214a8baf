"""Knowledge-distillation losses, projections, layer maps and feature taps for transformer students."""

__version__ = "0.1.0"
