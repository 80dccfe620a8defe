"""Benches of hdl/irq_remap.py: the parts both simulators share.

- ``IrqScoreboard``: the interrupt scoreboard, fed by ``model.irq_remap.GoldenIrqRemap``.
  It takes cycle-stamped port events (interrupt accepted, command accepted, delivery
  taken, fault record popped, READ result) and proves, per raised (VF, vector) event:
  delivered exactly once -- or coalesced into a pending bit that is delivered once, or
  blocked, or still pending at the end -- to the right VM and guest vector, in decision
  order, never while masked or held (the model only delivers deliverable entries, and
  every delivery must match one of the model's); blocked ones counted (``blocked_count``)
  and recorded (every fault record popped is compared). It also checks the stimulus'
  intent independently of the model: a spoofed or absent-entry raise is never delivered,
  a raise from a VF's own location is never blocked for its source id.
- ``Traffic``: interrupt storms from every VF's current location, with spoofs (a VF naming
  another VF's entry) and raises naming entries that do not exist.
- ``control_script``: table programming, mask toggles, overlapping migrations (HOLD,
  drain, RETARGET, RELEASE), not-present entries, READs, invalid commands, and a final
  unmask-and-release so that every pending interrupt must come out.
- ``PortBench``: the whole bench at cycle level (drive inputs, then ``edge`` with the
  outputs sampled before the clock edge); tests/hdl/test_irq_remap.py runs it in amaranth.sim.
  The cocotb/pyuvm bench (tb/irq_remap/test_irq_remap.py) reuses scoreboard, traffic and
  script with its own agents.

Timing contract used (hdl/irq_remap.py): an interrupt accepted in cycle ``c`` executes in
``c + 1``; a command executes in its accepting cycle; a READ's result is on ``rd_*`` from
``c + 1``; a fault record pushed in cycle ``e`` counts against ``fault_depth`` before a pop
in the same cycle.
"""

from .configs import (
    BENCH_PARAMS,
    CONFIGS,
    ENV_KNOBS,
    ENV_REPORT,
    HW_COUNTERS,
    ODD_PARAMS,
    build_remap,
    layouts,
    pack,
    params_from_env,
    params_to_env,
    unpack,
)
from .harness import (
    BenchKnobs,
    PortBench,
)
from .scoreboard import (
    IrqScoreboard,
    IrqTotals,
)
from .stimulus import (
    RaiseEvent,
    RaiseKind,
    Step,
    Traffic,
    control_script,
    holes,
    initial_locations,
    open_vfs,
)

__all__ = [
    "CONFIGS",
    "BENCH_PARAMS",
    "BenchKnobs",
    "ENV_KNOBS",
    "ENV_REPORT",
    "HW_COUNTERS",
    "IrqScoreboard",
    "IrqTotals",
    "ODD_PARAMS",
    "PortBench",
    "RaiseEvent",
    "RaiseKind",
    "Step",
    "Traffic",
    "build_remap",
    "control_script",
    "holes",
    "initial_locations",
    "layouts",
    "open_vfs",
    "pack",
    "params_from_env",
    "params_to_env",
    "unpack",
]
