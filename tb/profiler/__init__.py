"""Benches of hdl/profiler.py: the parts the amaranth.sim and the cocotb bench share.

- ``ProfilerParams`` / ``CONFIGS``: the configurations under test.
- ``Cycle`` and ``random_traffic``: what the profiler's ports see, cycle by cycle — requests
  and responses with legal (vf, tag) use (tags reused, sometimes in the very cycle their
  response goes out), events for VF ids that do not exist, busy bits, link words, snapshot
  pulses, and the snapshot-bank reads that follow each pulse while traffic goes on.
- ``reference_windows``: the independent reference. It works on whole requests (issue and
  response cycles), not on counters: latency = response cycle - request cycle,
  occupancy = the part of each request's outstanding interval inside the window, the
  occupancy peak from a per-cycle count of open intervals, the histogram by
  ``model.profiler.latency_bin``; then the documented saturation.
- ``read_back``: the register words read after each snapshot, as the same dicts.
- ``counter_snapshot`` / ``device_snapshot``: register words -> ``model.profiler``
  ``CounterSnapshot`` / ``DeviceSnapshot`` (what the VMM-side profiler consumes).

Timing contract used (hdl/profiler.py): a snapshot pulsed in cycle ``c`` closes the window
[previous pulse, c) and is readable from a read presented in ``c + 2``; ``rd_data`` in
cycle ``k + 1`` answers the read presented (``rd_en``) in ``k`` and holds until the next.
"""

from .configs import (
    CONFIGS,
    ProfilerParams,
)
from .scoreboard import (
    Window,
    compare,
    counter_snapshot,
    cy_bit,
    device_snapshot,
    read_back,
    reference_windows,
)
from .stimulus import (
    Cycle,
    Plan,
    random_traffic,
    schedule_reads,
)

__all__ = [
    "CONFIGS",
    "Cycle",
    "Plan",
    "ProfilerParams",
    "Window",
    "compare",
    "counter_snapshot",
    "cy_bit",
    "device_snapshot",
    "random_traffic",
    "read_back",
    "reference_windows",
    "schedule_reads",
]
