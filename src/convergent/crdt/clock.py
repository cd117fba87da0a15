"""The Hybrid Logical Clock (Kulkarni et al., "Logical Physical Clocks", 2014).

An HLC timestamp is one integer: wall milliseconds in the high bits, a logical counter in
the low 16 bits. It is monotone on every replica, exceeds every timestamp the replica has
observed, and stays within the clock skew of physical time, so it orders last-writer-wins
updates causally *and* reads as a wall time in the audit history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NewType

Timestamp = NewType("Timestamp", int)
"""``(wall_ms << 16) | logical``: an int that sorts like the (wall, logical) pair."""

LOGICAL_BITS = 16
_LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
# Timestamps are stored as signed 64-bit integers. Decoders refuse anything above this, which
# leaves 2**32 ticks of headroom: a replica that observed the largest accepted timestamp can
# still stamp its own edits.
MAX_TIMESTAMP = (1 << 63) - (1 << 32)


def pack(wall_ms: int, logical: int = 0) -> Timestamp:
    """Build a timestamp from its parts."""
    return Timestamp((wall_ms << LOGICAL_BITS) | logical)


def wall_ms(ts: int) -> int:
    """The physical part of a timestamp, in Unix milliseconds."""
    return ts >> LOGICAL_BITS


def logical(ts: int) -> int:
    """The logical part of a timestamp."""
    return ts & _LOGICAL_MASK


def _system_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridLogicalClock:
    """A replica's HLC.

    Args:
        wall: a function returning Unix milliseconds; injectable so tests can skew clocks.

    Example:
        >>> clock = HybridLogicalClock(wall=lambda: 1_000)
        >>> a = clock.now(); b = clock.now()
        >>> b > a, wall_ms(b), logical(b)
        (True, 1000, 1)
        >>> remote = pack(5_000, 3)            # a peer whose clock runs ahead
        >>> clock.observe(remote); clock.now() > remote
        True
    """

    __slots__ = ("_last", "_wall")

    def __init__(self, wall: Callable[[], int] = _system_ms, last: int = 0) -> None:
        self._wall = wall
        self._last = last

    @property
    def last(self) -> Timestamp:
        """The latest timestamp issued or observed."""
        return Timestamp(self._last)

    def now(self) -> Timestamp:
        """A new timestamp, greater than every one issued or observed so far."""
        physical = self._wall() << LOGICAL_BITS
        # Either physical time moved past everything we know (logical resets to 0), or we
        # advance the logical part. Carrying into the wall bits when the 16-bit logical part
        # overflows keeps monotonicity at the cost of a millisecond of drift.
        self._last = physical if physical > self._last else self._last + 1
        return Timestamp(self._last)

    def observe(self, remote: int) -> None:
        """Merge a timestamp received from another replica, so later ``now()`` exceeds it."""
        self._last = max(self._last, remote)
