"""Einmal: once-only proof broker and Datenschutzcockpit (shared core: CLI, settings, domain)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
