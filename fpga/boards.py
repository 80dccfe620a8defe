"""The boards ``make fpga`` builds for: an amaranth-boards platform, the system configuration
chosen for the chip, and the clock the self-test runs at."""

from __future__ import annotations

from dataclasses import dataclass, field

from model.config import SystemConfig
from model.presets import PRESETS

__all__ = ["BOARDS", "Board", "board_named"]


@dataclass(frozen=True)
class Board:
    name: str
    platform: str            # class name in amaranth_boards.<module>
    module: str
    config: SystemConfig = field(default_factory=SystemConfig)
    target_mhz: float = 100.0
    reset_button: str = "button_pwr"    # active-low on the ULX3S (PinsN): held = reset
    #: LUT mapping: "abc9" (synth_ecp5's own) or "abc" (classic ABC, for a design whose
    #: ABC9 reintegration crashes YoWASP Yosys 0.70: docs/fpga.md)
    lut_mapping: str = "abc9"
    note: str = ""

    def make_platform(self):
        import importlib
        return getattr(importlib.import_module(f"amaranth_boards.{self.module}"),
                       self.platform)()


BOARDS = {b.name: b for b in (
    Board("ulx3s-85f", "ULX3S_85F_Platform", "ulx3s", PRESETS["default"], 100.0,
          lut_mapping="abc",
          note="ECP5 LFE5U-85F: the default system (8 VFs, 256-word images)"),
    Board("ulx3s-25f", "ULX3S_25F_Platform", "ulx3s", PRESETS["small"], 50.0,
          note="ECP5 LFE5U-25F: the small preset (2 VFs, 81-word images)"),
)}


def board_named(name: str | None) -> Board:
    """The board called ``name``; ValueError (one line listing the boards) otherwise."""
    if name in BOARDS:
        return BOARDS[name]
    listing = "; ".join(f"{b.name} ({b.note})" for b in BOARDS.values())
    what = "no BOARD given" if not name else f"unknown BOARD={name!r}"
    raise ValueError(f"{what}: choose one of {listing}")
