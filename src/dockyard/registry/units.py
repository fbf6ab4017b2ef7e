"""Sizes and durations as people write and read them: ``500MB``, ``2GiB``, ``7d``, ``12h``.

Quotas and retention rules are stored in bytes and seconds; these turn what an operator types on
the command line into those numbers, and the numbers back into something readable in messages.
Decimal units are powers of 1000 (``MB``, as disks and clouds bill), binary ones powers of 1024
(``MiB``); a bare number is bytes or seconds.
"""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER_UNIT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")
MAX_BYTES = 2**62  # fits a BIGINT with room for sums
MAX_SECONDS = 100 * 365 * 86400


def parse_size(text: str) -> int:
    """Bytes from ``500MB``, ``2GiB``, ``1.5G`` or ``1048576``; ValueError with a readable reason."""
    found = _NUMBER_UNIT.fullmatch(text)
    unit = found.group(2).lower() if found else None
    if found is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size: write e.g. 500MB, 2GiB or a number of bytes")
    value = int(float(found.group(1)) * _SIZE_UNITS[unit])
    if not 1 <= value <= MAX_BYTES:
        raise ValueError(f"{text!r} is out of range: from 1 byte to {format_size(MAX_BYTES)}")
    return value


def format_size(n: int) -> str:
    """``1.2 GB``: decimal units, one decimal, as quota messages and the CLI show sizes."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(value) < 1000 or unit == "PB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def parse_duration(text: str) -> int:
    """Seconds from ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` or a plain number of seconds."""
    found = _NUMBER_UNIT.fullmatch(text)
    unit = found.group(2).lower() if found else None
    if found is None or unit not in _DURATION_UNITS:
        raise ValueError(f"{text!r} is not a duration: write e.g. 90s, 15m, 12h, 7d, 2w or a number of seconds")
    value = int(float(found.group(1)) * _DURATION_UNITS[unit])
    if value > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than 100 years")
    return value


def format_duration(seconds: float) -> str:
    """The largest whole unit that fits, then the next: ``3d 4h``, ``15m``, ``1s``."""
    seconds = int(seconds)
    parts = []
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        if len(parts) == 2:
            break
    return " ".join(parts)
