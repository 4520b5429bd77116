"""The garbage collector's pace for a routing process.

CPython starts a young-generation collection after 700 net container
allocations.  A router allocates a few hundred small objects per message
(envelopes, outcomes, frames, futures, a task) and frees nearly all of them
by reference counting at once, while it keeps tens of thousands of long-lived
ones (compiled schemas, CEL programs, the topology): at 700, collections ran
every few messages, and each older-generation pass walked everything that
lives.  Measured on this machine's benchmark (``bench/throughput.py``), the
router spent 345 µs of CPU per message with the default thresholds and 243 µs
with these.  Cyclic garbage waits longer to be collected, a few megabytes at
most; the soak (``bench/soak.py``) checks memory stays flat.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "pace_collector"]

THRESHOLDS = (50_000, 50, 100)


def pace_collector() -> None:
    """Collect young objects every 50,000 net allocations instead of 700 (idempotent)."""
    gc.set_threshold(*THRESHOLDS)
