"""Exactly-once interrupts through the system's remapper (issue 3), at cycle level.

The system top exposes ``irq_trace``: per cycle, the interrupt message the remapper
accepted ({handle, source device and slot}, and ``raiser``, the VF of the sending slot) and
the command it accepted (the VMM's IRTE writes and reads, the HOLD / RETARGET / RELEASE the
system issues as VFs move). ``SystemIrqCheck`` replays both into the block bench's
``tb.irq_remap.IrqScoreboard`` (``model.irq_remap.GoldenIrqRemap`` underneath), with the
block's timing contract, and matches every delivery on ``irq`` against it: per message a
device sent, delivered exactly once to the programmed VM and guest vector, or blocked and
recorded. A message whose handle names another VF's entry is a spoof and must be blocked;
one naming an entry that is not present must be blocked as NOT_PRESENT.

The VMM's IRTE reads (IRTE_DATA) and fault pops (IRQ_FAULT) are checked against the same
model, so the remapper's table and pending bits are compared after every migration.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import SystemConfig
from model.irq_remap import RemapCommand, RemapEntry, RemapOp
from model.regmap import IRTE_DATA_PENDING, irq_fault_fields
from tb.irq_remap import IrqScoreboard, RaiseEvent, RaiseKind


def _field(layout, name: str, word: int) -> int:
    fld = layout[name]
    return word >> fld.offset & ((1 << fld.width) - 1)


@dataclass
class IrqTotalsReport:
    """The report's interrupt totals (``report.json`` ``totals``)."""
    interrupts_raised: int
    interrupts_delivered: int      # raised messages answered by a delivery (coalesced ones too)
    interrupts_duplicated: int
    interrupts_lost: int           # expected deliveries never seen + still pending at the end
    interrupts_blocked: int
    interrupts_spoofed: int        # messages naming another VF's entry
    interrupts_absent: int         # messages naming an entry that was not present
    irq_check_errors: int
    remap_held_raises: int         # messages that reached the remapper while their VF was held
    remap_release_replays: int     # pending interrupts a RELEASE delivered
    remap_replays: int             # pending interrupts delivered (RELEASE or unmask)
    remap_overlapping_holds: int   # HOLDs of a VF while another VF was held


class SystemIrqCheck:
    """Feed with ``trace(cycle, word)`` every cycle something fired, ``delivered(cycle,
    irq)`` for every delivery, ``read_result(cycle, word)`` for every IRTE_DATA read after a
    READ command, ``fault(cycle, word)`` for every IRQ_FAULT read; then ``finish``."""

    def __init__(self, config: SystemConfig):
        from hdl.system import irq_trace_layout  # only where the HDL is importable

        self.params = config.irq_remap
        self.board = IrqScoreboard(self.params)
        self.layout = irq_trace_layout(config)
        self._raise = self.layout["raise_"].shape
        self._ctl = self.layout["ctl"].shape
        self._entry = self._ctl["entry"].shape
        self.raiser_of: dict[int, int] = {}
        self._finished = None

    @property
    def messages(self) -> list[str]:
        return self.board.messages

    # ------------------------------------------------------------ inputs
    def trace(self, cycle: int, word: int) -> None:
        lay = self.layout
        if _field(lay, "command", word):
            ctl = _field(lay, "ctl", word)
            entry = RemapEntry.unpack(self.params, _field(self._ctl, "entry", ctl))
            self.board.command(cycle, RemapCommand(
                RemapOp(_field(self._ctl, "op", ctl)), _field(self._ctl, "vf", ctl),
                _field(self._ctl, "vector", ctl), entry))
        if _field(lay, "raised", word):
            raw = _field(lay, "raise_", word)
            handle = _field(self._raise, "handle", raw)
            raiser = _field(lay, "raiser", word)
            vf, vector = self.params.split(handle)
            if vf != raiser:
                kind = RaiseKind.SPOOF
            elif not self.board.model.entry(vf, vector).present:
                kind = RaiseKind.ABSENT
            else:
                kind = RaiseKind.OWN
            self.board.raised(cycle, RaiseEvent(
                handle, _field(self._raise, "source_device", raw),
                _field(self._raise, "source_slot", raw), kind=kind, raiser=raiser))

    def delivered(self, cycle: int, irq) -> None:
        self.board.delivered(cycle, {"vm": irq.vm, "guest_vector": irq.guest_vector,
                                     "vf": irq.vf, "vector": irq.vector})

    def read_result(self, cycle: int, word: int) -> RemapEntry:
        entry = RemapEntry.unpack(self.params, word & ((1 << IRTE_DATA_PENDING) - 1))
        self.board.read_result(cycle, entry.to_dict(),
                               word >> IRTE_DATA_PENDING & 1)
        return entry

    def fault(self, cycle: int, word: int) -> dict[str, int] | None:
        """One IRQ_FAULT read; returns the record, or None when the queue was empty."""
        record = irq_fault_fields(word)
        if not record.pop("valid"):
            return None
        self.board.fault_popped(cycle, record)
        return record

    # ------------------------------------------------------------ results
    def outstanding(self) -> int:
        return self.board.outstanding()

    def finish(self, hw: dict[str, int] | None = None) -> IrqTotalsReport:
        if self._finished is None:
            t = self.board.finish(hw)
            answered = self.board.answered
            self._finished = IrqTotalsReport(
                interrupts_raised=t.raised, interrupts_delivered=answered,
                interrupts_duplicated=t.duplicated, interrupts_lost=t.lost + t.pending_at_end,
                interrupts_blocked=t.blocked, interrupts_spoofed=t.spoof_attempts,
                interrupts_absent=t.absent_attempts, irq_check_errors=t.errors,
                remap_held_raises=t.held_raises, remap_release_replays=t.release_replays,
                remap_replays=t.replayed, remap_overlapping_holds=t.overlapping_holds)
        return self._finished
