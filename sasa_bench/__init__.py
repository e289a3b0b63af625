"""sasa_bench: build, count, measure and report Stand-Alone Self-Attention vision models."""

__version__ = "0.1.0"
