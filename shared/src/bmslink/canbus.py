"""Opening a python-can bus: the one place where can-reader and can-inverter-emulator open
the CAN interface (``socketcan`` on a Pi, ``slcan`` for USB adapters, ``virtual`` in tests).

python-can 4.6 facts used here (pylontech-can.md §10): ``slcan`` takes a device path or a
pyserial URL (``socket://host:port``) and sleeps ``sleep_after_open`` s after opening (default
2 s, set from ``open_delay``); ``socketcan`` ignores the bitrate (the host configures ``can0``);
``virtual`` only reaches buses of the same process.
"""

from __future__ import annotations

from typing import Any

import can


class BusOpenError(Exception):
    """The CAN interface cannot be opened (adapter missing, port busy, bad channel)."""


def open_bus(
    interface: str,
    channel: str,
    bitrate: int,
    *,
    open_delay: float = 0.0,
    listen_only: bool = False,
) -> can.BusABC:
    """Open ``interface``/``channel`` at ``bitrate`` bit/s; raises :class:`BusOpenError`.

    ``listen_only`` opens an slcan adapter with ``L`` (no ACK, no transmission); other
    interfaces ignore it (socketcan: configure listen-only on the host link).
    """
    kwargs: dict[str, Any] = {}
    if interface == "slcan":
        kwargs = {"bitrate": bitrate, "sleep_after_open": open_delay, "listen_only": listen_only}
    elif interface == "serial":
        kwargs = {}
    elif interface == "virtual":
        kwargs = {"receive_own_messages": False}
    try:
        return can.Bus(interface=interface, channel=channel, **kwargs)
    except (can.CanError, OSError, ValueError) as exc:
        raise BusOpenError(f"cannot open {interface} {channel}: {exc}") from exc
