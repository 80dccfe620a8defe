"""Golden model of the interrupt remapper (docs/design.md `irq_remap`; issue 3 items 1 and 4).

Modelled on Intel VT-d interrupt remapping (remappable MSI format) and PCIe MSI-X:

- The MSI address a VF programs carries an IRTE *handle*; the hardware attaches the
  requester's *source id* (device, slot). The table is indexed by the handle, one entry per
  (VF, vector): ``handle = vf * vector_stride + vector`` with ``vector_stride`` the power of
  two ``>= n_vectors`` (so ``handle = Cat(vector, vf)`` in hardware; with a power-of-two
  vector count this is ``vf * n_vectors + vector``). ``msi_address``/``handle_of_address``
  give the VT-d remappable address encoding of a handle.
- Entry (``RemapEntry``): present, mask, validation mode (OFF / EXACT), expected source id
  (device, slot), destination (VM id, guest vector). ``entry_fields`` is the bit layout the
  HDL uses (LSB first). A not-present entry has no other content: writing one stores, and
  reading one returns, the all-zero entry (its PBA bit is kept).

Behaviour (one event at a time, in the order the hardware executes them):

- ``raise_interrupt``: an interrupt whose handle names no entry or a not-present one is
  BLOCKED (NOT_PRESENT); with mode EXACT, one whose source id differs from the entry's is
  BLOCKED (SOURCE_MISMATCH). Blocked interrupts are counted and recorded in a fault record
  (a FIFO of ``fault_depth`` records; when full the record is dropped and counted). The
  check comes first: a held or masked entry still blocks a spoofed interrupt.
- Otherwise, if the entry is masked or its VF is held, the interrupt sets the entry's
  pending bit (PBA). **Pending bits coalesce**: an interrupt for an entry already pending
  adds no delivery (``Outcome.COALESCED``), exactly as an MSI-X PBA bit does. Else it is
  delivered: ``Delivery`` {vm, guest_vector, vf, vector}.
- Invariant after every event: a pending entry is never deliverable (present, unmasked,
  VF not held) -- whatever makes it deliverable delivers it in the same event.
- Commands (``RemapCommand``; an invalid one is refused and counted in ``ctl_errors``):

  * WRITE(vf, vector, entry): store the entry. If the entry is now deliverable and pending
    (an *unmask*), deliver it once (``replay=True``) and clear the bit.
  * READ(vf, vector): return (entry, pending bit).
  * HOLD(vf): from now on the VF's interrupts that pass the checks go pending.
  * RETARGET(vf, source from ``entry``): set the expected source id of every present entry
    of the VF (a VF moving to the other device/slot). Pending bits are untouched: they
    were validated when raised.
  * RELEASE(vf): stop holding; deliver each pending, present, unmasked vector of the VF
    once, in ascending vector order, clearing its bit. Masked ones stay pending until
    unmasked; not-present ones until written present and unmasked.

Every delivery names the raises it answers (``raises``: the raise ids of the interrupt
that was delivered directly, or of every raise coalesced into a pending bit), so a
scoreboard can prove per raised event: delivered exactly once, or blocked, or still
pending at the end.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from enum import IntEnum

from .common import bits_for, check_int

__all__ = [
    "SOURCE_DEVICE_BITS", "SOURCE_SLOT_BITS", "CTL_OP_BITS", "FAULT_REASON_BITS",
    "MAX_TABLE_ENTRIES", "ValidationMode", "FaultReason", "RemapOp", "Outcome", "RemapParams",
    "RemapEntry", "RemapCommand", "Delivery", "FaultRecord", "RaiseResult", "CommandResult",
    "GoldenIrqRemap", "entry_fields", "msi_address", "handle_of_address",
]

SOURCE_DEVICE_BITS = 1   # 0 host, 1 offload (model.config.Device)
SOURCE_SLOT_BITS = 8
CTL_OP_BITS = 3
FAULT_REASON_BITS = 2
MAX_TABLE_ENTRIES = 4096  # n_vfs * vector_stride: pending bits are flip-flops


class ValidationMode(IntEnum):
    """Source-id validation of an entry (VT-d SVT/SQ reduced to the two useful cases)."""
    OFF = 0    # any source may raise this entry
    EXACT = 1  # only the entry's (source_device, source_slot)


class FaultReason(IntEnum):
    """Why an interrupt was blocked (0 is never recorded)."""
    NOT_PRESENT = 1      # the handle names no entry, or a not-present one
    SOURCE_MISMATCH = 2  # mode EXACT and the source id differs from the entry's


class RemapOp(IntEnum):
    """Control-port commands (``ctl.payload.op``)."""
    WRITE = 0
    READ = 1
    HOLD = 2
    RELEASE = 3
    RETARGET = 4


class Outcome(IntEnum):
    """What a raised interrupt did."""
    DELIVERED = 0
    PENDING = 1     # set the entry's pending bit
    COALESCED = 2   # the pending bit was already set: no additional delivery
    BLOCKED = 3


@dataclass(frozen=True)
class RemapParams:
    """Geometry and field widths of a remapper; validated once for model and HDL."""
    n_vfs: int
    n_vectors: int
    vm_bits: int = 8
    guest_vector_bits: int = 8
    fault_depth: int = 8

    def __post_init__(self):
        check_int("IrqRemap", "n_vfs", self.n_vfs, 1, 255)
        check_int("IrqRemap", "n_vectors", self.n_vectors, 1, 2048)
        check_int("IrqRemap", "vm_bits", self.vm_bits, 1, 16)
        check_int("IrqRemap", "guest_vector_bits", self.guest_vector_bits, 1, 16)
        check_int("IrqRemap", "fault_depth", self.fault_depth, 1, 256)
        if self.n_handles > MAX_TABLE_ENTRIES:
            raise ValueError(f"IrqRemap table must have at most {MAX_TABLE_ENTRIES} entries "
                             f"(n_vfs * vector_stride = {self.n_vfs} * {self.vector_stride}), "
                             f"not {self.n_handles}")

    @property
    def vf_bits(self) -> int:
        return bits_for(self.n_vfs)

    @property
    def vector_bits(self) -> int:
        return bits_for(self.n_vectors)

    @property
    def vector_stride(self) -> int:
        """Handles per VF: the power of two >= n_vectors."""
        return 1 << self.vector_bits

    @property
    def handle_bits(self) -> int:
        return self.vf_bits + self.vector_bits

    @property
    def n_handles(self) -> int:
        """Table rows (entries with vector >= n_vectors exist but can never be present)."""
        return self.n_vfs * self.vector_stride

    def handle(self, vf: int, vector: int) -> int:
        if not (0 <= vf < 1 << self.vf_bits and 0 <= vector < self.vector_stride):
            raise ValueError(f"(vf={vf}, vector={vector}) does not fit a handle")
        return vf * self.vector_stride + vector

    def split(self, handle: int) -> tuple[int, int]:
        """(vf, vector) of any handle value, valid or not."""
        if not 0 <= handle < 1 << self.handle_bits:
            raise ValueError(f"handle {handle} does not fit {self.handle_bits} bits")
        return handle >> self.vector_bits, handle & (self.vector_stride - 1)

    def valid(self, vf: int, vector: int) -> bool:
        """The (vf, vector) names a table entry."""
        return 0 <= vf < self.n_vfs and 0 <= vector < self.n_vectors

    def to_dict(self) -> dict[str, int]:
        return {"n_vfs": self.n_vfs, "n_vectors": self.n_vectors, "vm_bits": self.vm_bits,
                "guest_vector_bits": self.guest_vector_bits, "fault_depth": self.fault_depth}


def entry_fields(params: RemapParams) -> dict[str, int]:
    """The entry's fields and widths, LSB first: the one definition of the HDL layout."""
    return {"present": 1, "mask": 1, "mode": 1, "source_device": SOURCE_DEVICE_BITS,
            "source_slot": SOURCE_SLOT_BITS, "vm": params.vm_bits,
            "guest_vector": params.guest_vector_bits}


@dataclass(frozen=True)
class RemapEntry:
    """One interrupt remapping table entry (an IRTE)."""
    present: bool = False
    mask: bool = False
    mode: ValidationMode = ValidationMode.OFF
    source_device: int = 0
    source_slot: int = 0
    vm: int = 0
    guest_vector: int = 0

    @property
    def source(self) -> tuple[int, int]:
        return self.source_device, self.source_slot

    def canonical(self) -> RemapEntry:
        """What the table keeps: a not-present entry has no other content."""
        return self if self.present else RemapEntry()

    def check(self, params: RemapParams) -> None:
        """Raise ValueError when a field does not fit its width (a testbench bug)."""
        for name, width in entry_fields(params).items():
            value = int(getattr(self, name))
            if not 0 <= value < 1 << width:
                raise ValueError(f"RemapEntry.{name}={value} does not fit {width} bits")

    def to_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in
                ("present", "mask", "mode", "source_device", "source_slot", "vm",
                 "guest_vector")}

    @classmethod
    def from_dict(cls, d: dict) -> RemapEntry:
        return cls(bool(d["present"]), bool(d["mask"]), ValidationMode(d["mode"]),
                   int(d["source_device"]), int(d["source_slot"]), int(d["vm"]),
                   int(d["guest_vector"]))

    def pack(self, params: RemapParams) -> int:
        """The entry as the HDL's packed bits (``entry_fields`` order)."""
        self.check(params)
        word, offset = 0, 0
        for name, width in entry_fields(params).items():
            word |= int(getattr(self, name)) << offset
            offset += width
        return word

    @classmethod
    def unpack(cls, params: RemapParams, word: int) -> RemapEntry:
        values, offset = {}, 0
        for name, width in entry_fields(params).items():
            values[name] = word >> offset & ((1 << width) - 1)
            offset += width
        return cls.from_dict(values)


@dataclass(frozen=True)
class RemapCommand:
    """One control-port command. RETARGET takes the new source id from ``entry``."""
    op: RemapOp
    vf: int = 0
    vector: int = 0
    entry: RemapEntry = field(default_factory=RemapEntry)

    @classmethod
    def write(cls, vf: int, vector: int, entry: RemapEntry) -> RemapCommand:
        return cls(RemapOp.WRITE, vf, vector, entry)

    @classmethod
    def read(cls, vf: int, vector: int) -> RemapCommand:
        return cls(RemapOp.READ, vf, vector)

    @classmethod
    def hold(cls, vf: int) -> RemapCommand:
        return cls(RemapOp.HOLD, vf)

    @classmethod
    def release(cls, vf: int) -> RemapCommand:
        return cls(RemapOp.RELEASE, vf)

    @classmethod
    def retarget(cls, vf: int, source_device: int, source_slot: int) -> RemapCommand:
        return cls(RemapOp.RETARGET, vf, 0,
                   RemapEntry(source_device=source_device, source_slot=source_slot))

    def to_dict(self, params: RemapParams) -> dict[str, int]:
        """Field values of the HDL's ``ctl`` payload (the entry packed)."""
        return {"op": int(self.op), "vf": self.vf, "vector": self.vector,
                "entry": self.entry.pack(params)}


@dataclass(frozen=True)
class Delivery:
    """A delivered (remapped) interrupt. ``raises``/``replay`` are bookkeeping, not wires."""
    vm: int
    guest_vector: int
    vf: int
    vector: int
    raises: tuple[int, ...] = ()
    replay: bool = False

    @property
    def key(self) -> tuple[int, int]:
        return self.vf, self.vector

    @property
    def message(self) -> tuple[int, int, int, int]:
        """What the hardware's output carries."""
        return self.vm, self.guest_vector, self.vf, self.vector


@dataclass(frozen=True)
class FaultRecord:
    source_device: int
    source_slot: int
    vf: int
    vector: int
    reason: FaultReason

    def to_dict(self) -> dict[str, int]:
        return {"source_device": self.source_device, "source_slot": self.source_slot,
                "vf": self.vf, "vector": self.vector, "reason": int(self.reason)}

    @classmethod
    def from_dict(cls, d: dict) -> FaultRecord:
        return cls(int(d["source_device"]), int(d["source_slot"]), int(d["vf"]),
                   int(d["vector"]), FaultReason(d["reason"]))


@dataclass(frozen=True)
class RaiseResult:
    outcome: Outcome
    delivery: Delivery | None = None
    fault: FaultRecord | None = None
    fault_recorded: bool = False  # False when the fault FIFO was full


@dataclass(frozen=True)
class CommandResult:
    accepted: bool
    deliveries: tuple[Delivery, ...] = ()
    read: tuple[RemapEntry, bool] | None = None   # READ: (entry, pending)


class GoldenIrqRemap:
    """The reference remapper: state, per-event semantics and counters.

    Feed events in the order the hardware executes them (hdl/irq_remap.py: an interrupt
    executes the cycle after ``irq_in`` accepts it, a command in the cycle ``ctl`` accepts
    it, and the two never coincide; fault pops go after both in a cycle).
    """

    def __init__(self, params: RemapParams):
        if not isinstance(params, RemapParams):
            raise TypeError(f"GoldenIrqRemap params must be a RemapParams, not {params!r}")
        self.params = params
        n = params.n_handles
        self.entries: list[RemapEntry] = [RemapEntry()] * n
        self.pending: list[bool] = [False] * n
        self.pending_raises: list[list[int]] = [[] for _ in range(n)]
        self.held: list[bool] = [False] * params.n_vfs
        self.faults: deque[FaultRecord] = deque()
        self.raised = 0
        self.delivered = 0   # deliveries produced (directly and by replays)
        self.replayed = 0
        self.coalesced = 0
        self.blocked = 0
        self.fault_dropped = 0
        self.ctl_errors = 0
        self._next_raise_id = 0

    # ------------------------------------------------------------------ queries
    def entry(self, vf: int, vector: int) -> RemapEntry:
        return self.entries[self.params.handle(vf, vector)]

    def is_pending(self, vf: int, vector: int) -> bool:
        return self.pending[self.params.handle(vf, vector)]

    def deliverable(self, handle: int) -> bool:
        vf, _ = self.params.split(handle)
        entry = self.entries[handle]
        return entry.present and not entry.mask and not self.held[vf]

    def pending_raise_ids(self) -> list[int]:
        return [rid for ids in self.pending_raises for rid in ids]

    # ------------------------------------------------------------------ events
    def raise_interrupt(self, handle: int, source_device: int, source_slot: int,
                        raise_id: int | None = None) -> RaiseResult:
        """One interrupt {handle, source id}; ``raise_id`` names it in deliveries."""
        p = self.params
        vf, vector = p.split(handle)
        if raise_id is None:
            raise_id = self._next_raise_id
        self._next_raise_id = max(self._next_raise_id, raise_id + 1)
        self.raised += 1
        valid = p.valid(vf, vector)
        entry = self.entries[handle] if valid else RemapEntry()
        reason = None
        if not entry.present:
            reason = FaultReason.NOT_PRESENT
        elif (entry.mode == ValidationMode.EXACT
              and (source_device, source_slot) != entry.source):
            reason = FaultReason.SOURCE_MISMATCH
        if reason is not None:
            self.blocked += 1
            record = FaultRecord(source_device, source_slot, vf, vector, reason)
            recorded = len(self.faults) < p.fault_depth
            if recorded:
                self.faults.append(record)
            else:
                self.fault_dropped += 1
            return RaiseResult(Outcome.BLOCKED, fault=record, fault_recorded=recorded)
        if entry.mask or self.held[vf]:
            self.pending_raises[handle].append(raise_id)
            if self.pending[handle]:
                self.coalesced += 1
                return RaiseResult(Outcome.COALESCED)
            self.pending[handle] = True
            return RaiseResult(Outcome.PENDING)
        return RaiseResult(Outcome.DELIVERED, delivery=self._deliver(handle, [raise_id]))

    def command(self, cmd: RemapCommand) -> CommandResult:
        p = self.params
        try:
            op = RemapOp(cmd.op)
        except ValueError:
            op = None
        needs_vector = op in (RemapOp.WRITE, RemapOp.READ)
        if (op is None or not 0 <= cmd.vf < p.n_vfs
                or (needs_vector and not 0 <= cmd.vector < p.n_vectors)):
            self.ctl_errors += 1
            return CommandResult(False)
        vf = cmd.vf
        if op == RemapOp.WRITE:
            cmd.entry.check(p)
            handle = p.handle(vf, cmd.vector)
            self.entries[handle] = cmd.entry.canonical()
            return CommandResult(True, tuple(self._replay(handle)))
        if op == RemapOp.READ:
            handle = p.handle(vf, cmd.vector)
            return CommandResult(True, read=(self.entries[handle], self.pending[handle]))
        if op == RemapOp.HOLD:
            self.held[vf] = True
            return CommandResult(True)
        if op == RemapOp.RETARGET:
            cmd.entry.check(p)
            for vector in range(p.n_vectors):
                handle = p.handle(vf, vector)
                if self.entries[handle].present:
                    self.entries[handle] = replace(self.entries[handle],
                                                   source_device=cmd.entry.source_device,
                                                   source_slot=cmd.entry.source_slot)
            return CommandResult(True)
        self.held[vf] = False   # RELEASE
        deliveries = []
        for vector in range(p.n_vectors):
            deliveries += self._replay(p.handle(vf, vector))
        return CommandResult(True, tuple(deliveries))

    def pop_fault(self) -> FaultRecord | None:
        return self.faults.popleft() if self.faults else None

    # ------------------------------------------------------------------ internals
    def _deliver(self, handle: int, raises: list[int], replay: bool = False) -> Delivery:
        vf, vector = self.params.split(handle)
        entry = self.entries[handle]
        self.delivered += 1
        self.replayed += int(replay)
        return Delivery(entry.vm, entry.guest_vector, vf, vector, tuple(raises), replay)

    def _replay(self, handle: int) -> list[Delivery]:
        if not (self.pending[handle] and self.deliverable(handle)):
            return []
        raises = self.pending_raises[handle]
        self.pending[handle] = False
        self.pending_raises[handle] = []
        return [self._deliver(handle, raises, replay=True)]


# ---------------------------------------------------------------- MSI address encoding
MSI_ADDRESS_BASE = 0xFEE0_0000
MSI_ADDRESS_REMAPPABLE = 1 << 4   # Interrupt Format = 1: remappable
MSI_ADDRESS_SHV = 1 << 3          # SubHandle Valid (not used: no sub-handles)


def msi_address(handle: int) -> int:
    """The VT-d remappable-format MSI address word naming ``handle`` (16 bits)."""
    if not 0 <= handle < 1 << 16:
        raise ValueError(f"an interrupt handle has 16 bits, not {handle}")
    return (MSI_ADDRESS_BASE | (handle & 0x7FFF) << 5 | MSI_ADDRESS_REMAPPABLE
            | (handle >> 15) << 2)


def handle_of_address(addr: int) -> int:
    """Inverse of ``msi_address``: bits [19:5] are handle[14:0], bit 2 is handle[15]."""
    return (addr >> 5 & 0x7FFF) | (addr >> 2 & 1) << 15
