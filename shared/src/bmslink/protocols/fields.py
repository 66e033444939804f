"""Generic big-endian field tables for the binary codecs of bmslink.

A *field table* is a sequence of :class:`Field` describing fixed-offset integers inside a
byte string (a datasheet table, in datasheet order). :func:`decode_fields` turns bytes into
``{name: value}`` in engineering units, :func:`encode_fields` does the reverse (used by the
simulator). Integers are big-endian; the physical value is ``(raw - bias) * scale``.

Pure functions, no I/O. Every codec passes its own exception type (``error=``) so that the
caller only ever sees that codec's error hierarchy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Field", "decode_fields", "encode_fields", "table_size"]


@dataclass(frozen=True, slots=True)
class Field:
    """One integer field of a binary layout.

    Attributes:
        name: key of the value in the decoded dict.
        offset: byte offset relative to the ``base`` passed to :func:`decode_fields`.
        size: width in bytes (1..8; 3 for the Pylontech ``u24`` capacities).
        signed: two's complement when True.
        scale: multiplier from raw counts to ``unit`` (e.g. 0.001 for mV -> V). When
            ``1/scale`` is an integer the value is computed as ``raw / (1/scale)``, which
            gives the correctly rounded decimal (3293 mV -> 3.293 V, not 3.2930000000000001).
        unit: unit of the decoded value ("V", "A", "Ah", "" ...), documentation only.
        description: free text (datasheet meaning, spec section).
        bias: raw value that maps to 0 (e.g. 2731 for 0.1 K -> °C); applied before ``scale``.

    A field whose ``scale`` is 1 and ``bias`` 0 decodes to ``int``, any other to ``float``.
    """

    name: str
    offset: int
    size: int
    signed: bool = False
    scale: float = 1.0
    unit: str = ""
    description: str = ""
    bias: int = 0
    _divisor: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.offset < 0 or not 1 <= self.size <= 8:
            raise ValueError(f"field {self.name!r}: bad offset/size {self.offset}/{self.size}")
        if self.scale == 0:
            raise ValueError(f"field {self.name!r}: scale must not be 0")
        inverse = 1.0 / self.scale
        divisor = round(inverse)
        if self.scale != 1.0 and divisor >= 1 and abs(inverse - divisor) < 1e-9 * divisor:
            object.__setattr__(self, "_divisor", divisor)

    @property
    def end(self) -> int:
        """Offset of the first byte after the field."""
        return self.offset + self.size

    @property
    def is_integer(self) -> bool:
        """True when the field decodes to an ``int`` (no scale, no bias)."""
        return self.scale == 1.0 and self.bias == 0

    def to_value(self, raw: int) -> float | int:
        """Raw integer -> engineering value, ``(raw - bias) * scale``."""
        if self.is_integer:
            return raw
        if self._divisor:
            return (raw - self.bias) / self._divisor
        return (raw - self.bias) * self.scale

    def to_raw(self, value: float) -> int:
        """Engineering value -> raw integer (rounded half to even), no range check."""
        if self._divisor:
            return round(value * self._divisor) + self.bias
        return round(value / self.scale) + self.bias

    def raw_range(self) -> tuple[int, int]:
        """Inclusive (min, max) raw values representable in ``size`` bytes."""
        bits = 8 * self.size
        if self.signed:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1


def table_size(table: Sequence[Field]) -> int:
    """Number of bytes a table spans from its base (max of ``offset + size``; 0 if empty)."""
    return max((f.offset + f.size for f in table), default=0)


def decode_fields(
    table: Sequence[Field],
    data: bytes,
    base: int = 0,
    *,
    error: type[Exception] = ValueError,
) -> dict[str, float | int]:
    """Decode every field of ``table`` from ``data`` starting at byte ``base``.

    Returns ``{field.name: value}`` in table order; values are ``int`` for unscaled fields,
    ``float`` otherwise (see :class:`Field`). Integers are big-endian.

    Raises:
        error: (``ValueError`` unless given) when ``data`` is shorter than
            ``base + table_size(table)``, with the expected and actual lengths in the message.
    """
    need = base + table_size(table)
    if base < 0 or len(data) < need:
        raise error(
            f"field table needs {need} bytes (base {base} + {need - base}), got {len(data)}"
        )
    from_bytes = int.from_bytes
    out: dict[str, float | int] = {}
    for f in table:
        start = base + f.offset
        raw = from_bytes(data[start : start + f.size], "big", signed=f.signed)
        out[f.name] = f.to_value(raw)
    return out


def encode_fields(
    table: Sequence[Field],
    values: Mapping[str, float | int],
    *,
    size: int | None = None,
    fill: int = 0,
    error: type[Exception] = ValueError,
) -> bytes:
    """Encode ``values`` into a byte string laid out by ``table`` (inverse of decode_fields).

    Args:
        table: the field table.
        values: ``{field.name: value}`` in engineering units; every field must be present.
        size: length of the result (default ``table_size(table)``); gaps are filled with ``fill``.
        fill: byte value for bytes no field covers.
        error: exception type raised on a missing value or a value out of the field's range.
    """
    length = table_size(table) if size is None else size
    if length < table_size(table):
        raise error(f"size {length} is smaller than the table ({table_size(table)} bytes)")
    buf = bytearray([fill]) * length
    for f in table:
        if f.name not in values:
            raise error(f"no value for field {f.name!r}")
        raw = f.to_raw(values[f.name])
        lo, hi = f.raw_range()
        if not lo <= raw <= hi:
            raise error(
                f"field {f.name!r}: value {values[f.name]!r} -> raw {raw} outside "
                f"{'s' if f.signed else 'u'}{8 * f.size} range [{lo}, {hi}]"
            )
        buf[f.offset : f.offset + f.size] = raw.to_bytes(f.size, "big", signed=f.signed)
    return bytes(buf)
