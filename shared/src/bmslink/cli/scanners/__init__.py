"""Scanners of ``bmslink scan``: one module per protocol family, each with ``SCANNERS``."""
