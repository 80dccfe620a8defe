"""The control-plane register map (byte addresses, 32-bit registers), defined once.

Global registers, then one block of per-VF VFIO-style registers per VF at
``VF_BASE + vf * VF_STRIDE``.  ``hdl/system.py`` decodes it; the testbench VMM and
``docs/regmap.md`` are generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .link import STAT_NAMES as LINK_STAT_NAMES

ID_VALUE = 0x5646_4D47  # "VFMG"
VF_BASE = 0x100
VF_STRIDE = 0x40
ADDR_BITS = 16  # byte address width of the register bus (the profiler window ends at 0xFFFF)
# Profiler window (hdl/profiler.py): row r (VF r, or the device row n_vfs) at
# PROFILER_BASE + r * PROFILER_ROW_STRIDE, register i of the row at + 4 * i; the register
# names of a row are hdl.profiler.PROFILER_VF_REGS / PROFILER_DEVICE_REGS (built from the
# fields of model.profiler.CounterSnapshot / DeviceSnapshot). It reads the snapshot taken by
# the last PROFILER_SNAPSHOT write, while counting goes on.
PROFILER_BASE = 0x8000
PROFILER_ROW_STRIDE = 0x80


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
    # Interrupt remapping (hdl/irq_remap.py, model/irq_remap.py). The VMM owns the IRTEs;
    # the migration engines hold, retarget and release a moving VF's entries themselves.
    Register("IRTE_CMD", 0x040, "RW",
             "write: [10:0] vector, [23:16] VF, [26:24] op (model.irq_remap.RemapOp: 0 WRITE "
             "the entry staged in IRTE_DATA, 1 READ into IRTE_DATA; other ops are refused). "
             "read: [0] a command still waits for the remapper (issue the next one after it "
             "clears), [1] the last command was refused"),
    Register("IRTE_DATA", 0x044, "RW",
             "write: stage an entry (model.irq_remap.RemapEntry.pack: [0] present, [1] mask, "
             "[2] mode EXACT, [3] source device, [11:4] source slot, [19:12] VM, [27:20] guest "
             "vector). read: the entry of the last READ, [31] its pending (PBA) bit"),
    Register("IRQ_FAULT", 0x048, "RO",
             "reading pops the oldest fault record: [0] valid, [2:1] reason "
             "(model.irq_remap.FaultReason), [3] source device, [11:4] source slot, "
             "[19:12] VF, [30:20] vector"),
    Register("IRQ_RAISED", 0x04C, "RO", "interrupts that reached the remapper (wraps)"),
    Register("IRQ_DELIVERED", 0x050, "RO", "interrupts delivered to VMs (wraps)"),
    Register("IRQ_BLOCKED", 0x054, "RO", "interrupts blocked: not present or wrong source"),
    Register("IRQ_COALESCED", 0x058, "RO", "raises that found their entry already pending"),
    Register("IRQ_FAULTS_DROPPED", 0x05C, "RO", "fault records lost to a full fault queue"),
    Register("PROFILER_SNAPSHOT", 0x0F0, "WO",
             "write (any value): close the profiler's window: every counter moves to the "
             "snapshot bank read through the profiler window, and counting restarts at 0"),
)

# Link health (hdl/link/, hdl/io_tunnel.py, hdl/mig_engine/): every counter wraps at 2**32
# (the engines' at 2**16). One block of LINK_<PORT>_<STAT> registers per device's link port,
# in model.link.STAT_NAMES order; bit errors, drops and duplicates on the wire show up here as
# CRC errors, NAKs and replays, while nothing is lost above the link.
LINK_BASE = {"HOST": 0x080, "OFFLOAD": 0x0B0}
_LINK_STAT_DOCS = {
    "tx_flits": "flits this port sent (frames and DLLPs)",
    "tx_packets": "packets sent for the first time",
    "tx_replays": "packets sent again (NAK or replay timer)",
    "tx_timeouts": "replay-timer expiries",
    "naks_received": "NAKs this port received",
    "rx_packets": "packets accepted in order",
    "rx_crc_errors": "frames dropped for a bad LCRC, a malformed header or a cut-short frame",
    "rx_seq_errors": "packets dropped for a sequence gap",
    "rx_duplicates": "duplicate packets dropped",
    "naks_sent": "NAKs this port sent",
    "rx_overflows": "in-order packets without receive-buffer room (a credit violation)",
}
assert set(_LINK_STAT_DOCS) == set(LINK_STAT_NAMES) and 4 * len(LINK_STAT_NAMES) <= 0x30
LINK_REGS = tuple(
    Register(f"LINK_{port}_{stat.upper()}", base + 4 * i, "RO",
             f"{port.lower()} link port: {_LINK_STAT_DOCS[stat]}")
    for port, base in LINK_BASE.items() for i, stat in enumerate(LINK_STAT_NAMES)
) + (
    Register("MIG_MALFORMED_HOST", 0x0E0, "RO", "migration messages the host engine dropped as "
                                                "malformed or out of protocol state"),
    Register("MIG_MALFORMED_OFFLOAD", 0x0E4, "RO", "the same, offload engine"),
    Register("IO_MALFORMED_HOST", 0x0E8, "RO", "TC_IO messages the host half of the I/O "
                                               "tunnel dropped as malformed"),
    Register("IO_MALFORMED_OFFLOAD", 0x0EC, "RO", "the same, offload half of the tunnel"),
)
GLOBAL_REGS = GLOBAL_REGS + LINK_REGS

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
    # DOWNTIME split by what the hold waited for; the five always sum to DOWNTIME.
    Register("DOWNTIME_DRAIN", 0x2C, "RO", "cycles of DOWNTIME spent draining the request in "
                                           "service"),
    Register("DOWNTIME_COPY", 0x30, "RO", "cycles of DOWNTIME spent copying the residual (stop-"
                                          "copy only: MIG_BEGIN and the whole image)"),
    Register("DOWNTIME_SWITCHOVER", 0x34, "RO", "cycles of DOWNTIME from SWITCHOVER (the target's "
                                                "digest check) to the COMMIT request"),
    Register("DOWNTIME_COMMIT", 0x38, "RO", "cycles of DOWNTIME from COMMIT to COMMIT_ACK"),
    Register("DOWNTIME_RELEASE", 0x3C, "RO", "cycles of DOWNTIME after the handshake: until the "
                                             "unit at the VF's place serves it (or a rollback)"),
)

GLOBAL = {r.name: r.offset for r in GLOBAL_REGS}
VF = {r.name: r.offset for r in VF_REGS}


class DowntimePhase(IntEnum):
    """What a VF's hold is waiting for, cycle by cycle: the DOWNTIME_<name> registers.  A
    migration engine names the phase of the VF it works on; RELEASE is every other held
    cycle (after COMMIT_ACK, or a rollback)."""
    DRAIN = 0
    COPY = 1
    SWITCHOVER = 2
    COMMIT = 3
    RELEASE = 4


DOWNTIME_REGS = tuple(f"DOWNTIME_{phase.name}" for phase in DowntimePhase)


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
# IRTE_CMD / IRTE_DATA / IRQ_FAULT fields: (lsb, width)
IRTE_CMD_VECTOR = (0, 11)
IRTE_CMD_VF = (16, 8)
IRTE_CMD_OP = (24, 3)
IRTE_CMD_BUSY = 0        # read side
IRTE_CMD_REFUSED = 1     # read side
IRTE_DATA_PENDING = 31   # read side
IRQ_FAULT_FIELDS = {"valid": (0, 1), "reason": (1, 2), "source_device": (3, 1),
                    "source_slot": (4, 8), "vf": (12, 8), "vector": (20, 11)}


def irte_cmd(op: int, vf: int, vector: int) -> int:
    """The IRTE_CMD word of a command (op a model.irq_remap.RemapOp)."""
    for name, value, (_, width) in (("op", op, IRTE_CMD_OP), ("vf", vf, IRTE_CMD_VF),
                                     ("vector", vector, IRTE_CMD_VECTOR)):
        if not 0 <= value < 1 << width:
            raise ValueError(f"IRTE_CMD {name} must fit {width} bits, not {value}")
    return (int(op) << IRTE_CMD_OP[0] | vf << IRTE_CMD_VF[0] | vector << IRTE_CMD_VECTOR[0])


def irq_fault_fields(word: int) -> dict[str, int]:
    """Decode an IRQ_FAULT word."""
    return {name: word >> lsb & ((1 << width) - 1)
            for name, (lsb, width) in IRQ_FAULT_FIELDS.items()}


def profiler_reg(row: int, index: int) -> int:
    """Byte address of profiler register ``index`` of ``row`` (a VF, or n_vfs: the device)."""
    if not 0 <= index < PROFILER_ROW_STRIDE // 4:
        raise ValueError(f"profiler register index must be below {PROFILER_ROW_STRIDE // 4}, "
                         f"not {index}")
    return PROFILER_BASE + row * PROFILER_ROW_STRIDE + 4 * index


def link_reg(port: str, stat: str) -> int:
    """Byte address of link counter ``stat`` (a model.link.STAT_NAMES entry) of ``port``
    ("host" or "offload")."""
    return GLOBAL[f"LINK_{port.upper()}_{stat.upper()}"]


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
    lines += ["", f"## Profiler window (at 0x{PROFILER_BASE:X} + row × "
              f"0x{PROFILER_ROW_STRIDE:X} + 4 × index)", "",
              "Row `vf` holds VF `vf`'s counters, row `n_vfs` the device counters, as "
              "snapshotted by the last PROFILER_SNAPSHOT write. The register order of a row is "
              "`hdl.profiler.PROFILER_VF_REGS` / `PROFILER_DEVICE_REGS`, the fields of "
              "`model.profiler.CounterSnapshot` / `DeviceSnapshot`; counters saturate.", ""]
    lines += ["", "## STATUS.error codes", "", "| code | name |", "|---|---|"]
    lines += [f"| {e.value} | {e.name} |" for e in ErrorCode]
    return "\n".join(lines) + "\n"
