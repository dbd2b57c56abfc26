"""The package version: a leaf every layer may read (records, reports)."""

__version__ = "0.1.0"
