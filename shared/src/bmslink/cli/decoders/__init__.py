"""Decoders of ``bmslink decode``: one module per protocol family, each with ``DECODERS``."""
