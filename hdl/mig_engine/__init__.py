"""The per-device migration engine and its parts (re-exports only)."""

from .engine import COUNTER_BITS, MigEngine
from .walker import VfioWalker

__all__ = ["COUNTER_BITS", "MigEngine", "VfioWalker"]
