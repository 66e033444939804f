"""Mutated frames for robustness checks (the tests' fuzz cases and the F-benchmarks)."""

from __future__ import annotations

import random

__all__ = ["mutate_ascii_frame"]


def mutate_ascii_frame(rng: random.Random, frame: bytes) -> bytes:
    """``frame`` with 1-4 random edits drawn from ``rng``: insert a random byte, delete a byte,
    flip one bit, or overwrite a byte with an ASCII hex digit (so that ASCII-hex frames such as
    Pylontech RS485's, pylontech-rs485.md §2, often stay plausible). Deterministic for a seeded
    ``rng``; may return ``b""`` only if ``frame`` is empty."""
    buf = bytearray(frame)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(buf) + 1)
        op = rng.randrange(4)
        if op == 0:
            buf.insert(i, rng.randrange(256))
        elif buf:
            i %= len(buf)
            if op == 1:
                del buf[i]
            elif op == 2:
                buf[i] ^= 1 << rng.randrange(8)
            else:
                buf[i] = rng.choice(b"0123456789ABCDEF")
    return bytes(buf)
