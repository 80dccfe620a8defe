"""The vfmig system top and its parts (re-exports only).

``top``: the System component, wiring only; ``placement``: where each VF lives, driving the
router; ``regfile``: the register file generated from model/regmap.py; ``interrupts``: the
interrupt path through the remapper; ``stats``: per-VF status and statistics.
"""

from .interrupts import InterruptPath, irq_trace_layout
from .placement import Placement
from .regfile import RegisterFile
from .stats import VfStats
from .top import FAULTS, System

__all__ = ["FAULTS", "InterruptPath", "Placement", "RegisterFile", "System",
           "VfStats", "irq_trace_layout"]
