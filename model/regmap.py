"""The control-plane register map (byte addresses, 32-bit registers), defined once.

Global registers, then one block of per-VF VFIO-style registers per VF at
``VF_BASE + vf * VF_STRIDE``.  ``hdl/system.py`` decodes it; the testbench VMM and
``docs/regmap.md`` are generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

ID_VALUE = 0x5646_4D47  # "VFMG"
VF_BASE = 0x100
VF_STRIDE = 0x40
ADDR_BITS = 15  # byte address width of the register bus (VF 254 ends at 0x40AC)


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str  # "RO", "RW", "WO"
    doc: str


GLOBAL_REGS = (
    Register("ID", 0x000, "RO", "identification, reads 0x5646_4D47 ('VFMG')"),
    Register("CAPS", 0x004, "RO", "[2:0] VFIO migration flags, [15:8] n_vfs, "
                                  "[23:16] host slots, [31:24] offload slots"),
    Register("CYCLE_LO", 0x008, "RO", "free-running cycle counter, low word "
                                      "(reading it latches CYCLE_HI)"),
    Register("CYCLE_HI", 0x00C, "RO", "cycle counter, high word latched by the CYCLE_LO read"),
    Register("IMAGE_WORDS", 0x010, "RO", "words in one VF state image"),
)

VF_REGS = (
    Register("DEVICE_STATE", 0x00, "RO", "[2:0] VFIO device state of the VF where it runs"),
    Register("REQUESTED_STATE", 0x04, "RW",
             "write: request a VFIO state (multi-step arcs are walked in hardware); an "
             "invalid request sets STATUS.error=INVALID_TRANSITION and changes nothing. "
             "read: the last accepted request"),
    Register("LOCATION", 0x08, "RO", "[0] device (0 host, 1 offload), [15:8] slot, "
                                     "[16] a migration of this VF is in progress"),
    Register("STATUS", 0x0C, "RO", "[3:0] error (ErrorCode), [7:4] protocol reason, [8] busy: "
                                   "the VF's device is walking a request (a new one would be "
                                   "refused), [9] pre-copy converged, [10] ready to commit"),
    Register("CONTROL", 0x10, "WO", "bit 0 COMMIT (in STOP after STOP_COPY), "
                                    "bit 1 CLEAR_ERROR"),
    Register("PRECOPY_INITIAL_BYTES", 0x14, "RO", "VFIO precopy info: initial bytes left"),
    Register("PRECOPY_DIRTY_BYTES", 0x18, "RO", "VFIO precopy info: dirty bytes now"),
    Register("DOWNTIME", 0x1C, "RO", "cycles of the VF's last hold (counting while held)"),
    Register("ROUNDS", 0x20, "RO", "dirty pre-copy rounds of the current or last migration"),
    Register("WORDS_SENT", 0x24, "RO", "STATE_DATA payload words of the current or last "
                                       "migration"),
    Register("MIGRATIONS", 0x28, "RO", "[15:0] committed, [31:16] aborted migrations"),
)

GLOBAL = {r.name: r.offset for r in GLOBAL_REGS}
VF = {r.name: r.offset for r in VF_REGS}


class ErrorCode(IntEnum):
    NONE = 0
    INVALID_TRANSITION = 1  # no legal arc sequence to the requested state
    REJECTED = 2            # the target refused MIG_BEGIN (reason field says why)
    ABORTED = 3             # the migration was aborted and rolled back (reason says why)
    TIMEOUT = 4             # a handshake reply never came; rolled back
    COMMIT_REFUSED = 5      # COMMIT outside STOP-after-STOP_COPY
    BUSY = 6                # a request arrived while the previous one was still walking


# STATUS / CONTROL / LOCATION bit positions
STATUS_ERROR = (0, 4)
STATUS_REASON = (4, 4)
STATUS_BUSY = 8
STATUS_CONVERGED = 9
STATUS_READY_TO_COMMIT = 10
CONTROL_COMMIT = 0
CONTROL_CLEAR_ERROR = 1
LOCATION_MIGRATING = 16


def vf_reg(vf: int, name: str) -> int:
    """Byte address of per-VF register ``name`` of ``vf``."""
    return VF_BASE + vf * VF_STRIDE + VF[name]


def markdown() -> str:
    """docs/regmap.md, generated from this module."""
    lines = ["# Register map", "", "Generated from `model/regmap.py` (`make docs`). Byte "
             "addresses, 32-bit registers.", "", "## Global", "",
             "| offset | name | access | description |", "|---|---|---|---|"]
    lines += [f"| 0x{r.offset:03X} | {r.name} | {r.access} | {r.doc} |" for r in GLOBAL_REGS]
    lines += ["", f"## Per VF (at 0x{VF_BASE:X} + vf × 0x{VF_STRIDE:X})", "",
              "| offset | name | access | description |", "|---|---|---|---|"]
    lines += [f"| 0x{r.offset:02X} | {r.name} | {r.access} | {r.doc} |" for r in VF_REGS]
    lines += ["", "## STATUS.error codes", "", "| code | name |", "|---|---|"]
    lines += [f"| {e.value} | {e.name} |" for e in ErrorCode]
    return "\n".join(lines) + "\n"
