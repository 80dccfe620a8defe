"""The interrupt remapper: IRTE table, source-id check, PBA, per-VF hold (docs/design.md).

Semantics, entry format and fault reasons are defined once in ``model/irq_remap.py``
(``GoldenIrqRemap`` is the reference); this file only implements them at one interrupt per
cycle. The layouts below are built from the model's field lists.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.common import check_fault_inject
from model.irq_remap import (
    CTL_OP_BITS,
    FAULT_REASON_BITS,
    SOURCE_DEVICE_BITS,
    SOURCE_SLOT_BITS,
    FaultReason,
    RemapOp,
    RemapParams,
    ValidationMode,
    entry_fields,
)

__all__ = ["IrqRemap", "FAULT_INJECTIONS", "raise_layout", "delivery_layout", "entry_layout",
           "control_layout", "fault_layout", "handle_from_msi_address"]

# Deliberate bugs, for the negative tests of the scoreboards only.
FAULT_INJECTIONS = ("double_replay", "forget_pba")
_OUT_DEPTH = 4   # delivery buffer: 3 free slots keep the pipeline full at 1 interrupt/cycle


def raise_layout(params: RemapParams) -> data.StructLayout:
    """An interrupt as it reaches the remapper (the system adds the source id)."""
    return data.StructLayout({"handle": params.handle_bits, "source_device": SOURCE_DEVICE_BITS,
                              "source_slot": SOURCE_SLOT_BITS, "data": 32})


def delivery_layout(params: RemapParams) -> data.StructLayout:
    """A remapped interrupt: (vm, guest_vector) for the VM; (vf, vector) says which entry."""
    return data.StructLayout({"vm": params.vm_bits, "guest_vector": params.guest_vector_bits,
                              "vf": params.vf_bits, "vector": params.vector_bits})


def entry_layout(params: RemapParams) -> data.StructLayout:
    """One table entry (``model.irq_remap.entry_fields``; ``RemapEntry.pack`` is bit-exact)."""
    return data.StructLayout(entry_fields(params))


def control_layout(params: RemapParams) -> data.StructLayout:
    """A command: ``op`` is a ``model.irq_remap.RemapOp``."""
    return data.StructLayout({"op": CTL_OP_BITS, "vf": params.vf_bits,
                              "vector": params.vector_bits, "entry": entry_layout(params)})


def fault_layout(params: RemapParams) -> data.StructLayout:
    """A blocked interrupt: its source id, the entry it named, a ``FaultReason``."""
    return data.StructLayout({"source_device": SOURCE_DEVICE_BITS,
                              "source_slot": SOURCE_SLOT_BITS, "vf": params.vf_bits,
                              "vector": params.vector_bits, "reason": FAULT_REASON_BITS})


def handle_from_msi_address(addr, handle_bits: int):
    """The handle an MSI address word names (VT-d remappable format, as
    ``model.irq_remap.handle_of_address``), truncated to ``handle_bits``."""
    return Cat(addr[5:20], addr[2])[:handle_bits]


_SOURCE = data.StructLayout({"device": SOURCE_DEVICE_BITS, "slot": SOURCE_SLOT_BITS})


class IrqRemap(wiring.Component):
    """Interrupt remapping table indexed by (VF, vector), with MSI-X mask/PBA and VF hold.

    Parameters
    ----------
    n_vfs : int
        VFs 0..n_vfs-1 (1..255).
    n_vectors : int
        MSI-X vectors per VF (1..2048). The table has ``n_vfs * vector_stride`` rows,
        ``vector_stride`` being the power of two >= n_vectors (at most 4096 rows).
    vm_bits, guest_vector_bits : int
        Widths of the destination fields (1..16; defaults 8).
    fault_depth : int
        Fault records kept until popped (1..256, default 8).

    Members
    -------
    irq_in : In(stream of raise_layout)
        {handle, source_device, source_slot, data}. ``handle = Cat(vector, vf)`` names the
        entry (``RemapParams.handle``); the system derives it from the MSI address
        (``handle_from_msi_address``) and attaches the source id of the device and slot that
        sent it. ``data`` is not used (no sub-handles).
    irq_out : Out(stream of delivery_layout)
        {vm, guest_vector, vf, vector}: remapped interrupts, in the order they were decided.
    ctl : In(stream of control_layout)
        {op, vf, vector, entry}, ``op`` a ``RemapOp``: WRITE entry (vf, vector) -- an unmask
        of a pending deliverable entry delivers it once; READ (vf, vector) into ``rd_*``;
        HOLD vf; RELEASE vf (replays its pending vectors, see below); RETARGET vf: every
        entry of the VF expects source id (``entry.source_device``, ``entry.source_slot``).
        A command with vf >= n_vfs, (WRITE/READ) vector >= n_vectors, or an unknown op is
        accepted, ignored and counted in ``ctl_errors``.
    rd_entry : Out(entry_layout), rd_pending : Out(1)
        The entry and PBA bit of the last valid READ, from the cycle after it was accepted
        until the next READ. A not-present entry reads as all zero.
    fault : Out(stream of fault_layout)
        {source_device, source_slot, vf, vector, reason}: one record per blocked interrupt,
        oldest first; the control plane pops one by taking it (``ready``). When
        ``fault_depth`` records wait, further records are dropped and counted.
    held : Out(n_vfs)
        VFs held.
    busy : Out(1)
        A RELEASE replay is running (``ctl`` and ``irq_in`` wait).
    raised_count, delivered_count, blocked_count, coalesced_count, fault_dropped : Out(32)
        Interrupts accepted on ``irq_in``; taken from ``irq_out``; blocked; raised while
        their entry was already pending (no additional delivery); fault records dropped.
        All wrap around.
    ctl_errors : Out(16)
        Commands ignored as invalid.

    Semantics are ``model.irq_remap.GoldenIrqRemap``'s, with this execution order: an
    interrupt accepted in cycle ``t`` executes (checks, pending bit, delivery decision) in
    ``t + 1``; a command executes in the cycle it is accepted; the two never coincide.

    Latency and throughput
    ----------------------
    * An interrupt accepted in cycle ``t`` is valid on ``irq_out`` in ``t + 2`` when it is
      delivered and ``irq_out`` is not backpressured (2 cycles added). ``irq_in`` takes one
      interrupt per cycle, held VF or not, with no command pending.
    * ``irq_in.ready`` is 0 while ``ctl.valid`` is 1, while ``busy``, and while fewer than
      2 of the 4 delivery buffer slots are free (``irq_out`` backpressure: nothing is lost,
      the source waits). It depends combinationally on ``ctl.valid`` only.
    * ``ctl.ready`` is 1 when no interrupt executes in the cycle, no replay runs and the
      delivery buffer has a free slot: under an interrupt storm a command waits 1 cycle and
      costs ``irq_in`` 2 cycles. WRITE, READ, HOLD, RETARGET take 1 cycle.
    * RELEASE with ``p`` pending vectors in the VF (masked ones included) keeps ``busy`` for
      ``p + 1`` cycles after the accepting cycle when ``p > 0`` (none when ``p = 0``), plus
      cycles lost to ``irq_out`` backpressure. Replays appear on ``irq_out`` in ascending
      vector order, the first 3 cycles after the accepting cycle, one per cycle.
    * The delivery of an unmask (WRITE) is valid on ``irq_out`` the cycle after the write.
    """

    def __init__(self, n_vfs: int, n_vectors: int, *, vm_bits: int = 8,
                 guest_vector_bits: int = 8, fault_depth: int = 8,
                 _fault_inject: str | None = None):
        try:
            self.params = params = RemapParams(n_vfs, n_vectors, vm_bits, guest_vector_bits,
                                               fault_depth)
            check_fault_inject("IrqRemap", _fault_inject, FAULT_INJECTIONS)
        except (TypeError, ValueError):
            self._MustUse__silence = True   # never elaborated: no "unused" warning
            raise
        self._fault_inject = _fault_inject
        super().__init__({
            "irq_in": In(stream.Signature(raise_layout(params))),
            "irq_out": Out(stream.Signature(delivery_layout(params))),
            "ctl": In(stream.Signature(control_layout(params))),
            "rd_entry": Out(entry_layout(params)),
            "rd_pending": Out(1),
            "fault": Out(stream.Signature(fault_layout(params))),
            "held": Out(n_vfs),
            "busy": Out(1),
            "raised_count": Out(32),
            "delivered_count": Out(32),
            "blocked_count": Out(32),
            "coalesced_count": Out(32),
            "fault_dropped": Out(32),
            "ctl_errors": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        s = self._storage(m)
        self._buffers(m, s)
        self._accept(m, s)
        self._execute(m, s)
        self._commands(m, s)
        self._read_out(m, s)
        self._replay_walk(m, s)
        self._deliver(m, s)
        return m

    def _in_range(self, vf, vector):
        return (vf < self.params.n_vfs) & (vector < self.params.n_vectors)

    def _storage(self, m: Module) -> SimpleNamespace:
        """Source ids sit in their own memory, one row per VF with a lane per vector, so
        RETARGET rewrites a VF's source ids in one cycle. ``present`` and the PBA are
        flip-flops: reset clears them (no memory sweep), and RELEASE needs a VF's whole PBA
        row at once. Memory fields of a not-present entry are never used."""
        p = self.params
        s = SimpleNamespace(vb=p.vector_bits, stride=p.vector_stride)
        stored = data.StructLayout({"mask": 1, "mode": 1, "vm": p.vm_bits,
                                    "guest_vector": p.guest_vector_bits})
        m.submodules.entries = entries = Memory(shape=stored, depth=p.n_handles, init=[])
        m.submodules.sources = sources = Memory(shape=data.ArrayLayout(_SOURCE, s.stride),
                                                depth=p.n_vfs, init=[])
        s.ent_wr, s.src_wr = entries.write_port(), sources.write_port(granularity=1)
        s.ent_rd, s.src_rd = entries.read_port(), sources.read_port()    # interrupts, replays
        s.ent_ctl, s.src_ctl = entries.read_port(), sources.read_port()  # READ
        s.present = Signal(p.n_handles)
        s.pending = Signal(p.n_handles)
        # The release replay walk's state (its logic is in _replay_walk).
        s.walk_busy = Signal()
        s.walk_vf = Signal(p.vf_bits)
        s.walk_todo = Signal(s.stride)
        s.walk_issue = Signal()
        s.walk_issue_vector = Signal(s.vb)
        m.d.comb += self.busy.eq(s.walk_busy)
        return s

    def _buffers(self, m: Module, s: SimpleNamespace) -> None:
        """The delivery buffer and the fault record FIFO in front of their streams."""
        p = self.params
        m.submodules.out_fifo = s.out_fifo = out_fifo = SyncFIFO(
            width=len(self.irq_out.payload.as_value()), depth=_OUT_DEPTH)
        m.submodules.fault_fifo = s.fault_fifo = fault_fifo = SyncFIFO(
            width=len(self.fault.payload.as_value()), depth=p.fault_depth)
        m.d.comb += [
            self.irq_out.valid.eq(out_fifo.r_rdy),
            self.irq_out.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.irq_out.ready),
            self.fault.valid.eq(fault_fifo.r_rdy),
            self.fault.payload.eq(fault_fifo.r_data),
            fault_fifo.r_en.eq(self.fault.ready),
        ]
        s.out_data = Signal(delivery_layout(p))
        m.d.comb += out_fifo.w_data.eq(s.out_data)
        # Room for a delivery in this cycle's step and one in the next.
        s.out_room2 = Signal()
        m.d.comb += s.out_room2.eq(out_fifo.level <= _OUT_DEPTH - 2)
        with m.If(self.irq_out.valid & self.irq_out.ready):
            m.d.sync += self.delivered_count.eq(self.delivered_count + 1)

    def _accept(self, m: Module, s: SimpleNamespace) -> None:
        """Stage A: accept an interrupt, read its entry."""
        irq_in = self.irq_in
        in_fire = Signal()
        m.d.comb += [
            irq_in.ready.eq(~self.ctl.valid & ~s.walk_busy & s.out_room2),
            in_fire.eq(irq_in.valid & irq_in.ready),
            s.ent_rd.addr.eq(Mux(s.walk_issue, Cat(s.walk_issue_vector, s.walk_vf),
                                 irq_in.payload.handle)),
            s.src_rd.addr.eq(irq_in.payload.handle[s.vb:]),
        ]
        s.x_valid = Signal()
        s.x_handle = Signal(self.params.handle_bits)
        s.x_source = Signal(_SOURCE)
        m.d.sync += [
            s.x_valid.eq(in_fire),
            s.x_handle.eq(irq_in.payload.handle),
            s.x_source.device.eq(irq_in.payload.source_device),
            s.x_source.slot.eq(irq_in.payload.source_slot),
        ]
        with m.If(in_fire):
            m.d.sync += self.raised_count.eq(self.raised_count + 1)

    def _execute(self, m: Module, s: SimpleNamespace) -> None:
        """Stage B: check the interrupt, set its pending bit or decide its delivery."""
        p = self.params
        s.x_vf, s.x_vector = x_vf, x_vector = s.x_handle[s.vb:], s.x_handle[:s.vb]
        s.x_entry = x_entry = s.ent_rd.data
        x_expected = s.src_rd.data[x_vector]
        x_present = Signal()
        x_block = Signal()
        x_pend = Signal()
        s.x_deliver = Signal()
        m.d.comb += [
            x_present.eq(self._in_range(x_vf, x_vector)
                         & s.present.bit_select(s.x_handle, 1)),
            x_block.eq(s.x_valid & (~x_present | ((x_entry.mode == ValidationMode.EXACT)
                                                  & (x_expected.as_value()
                                                     != s.x_source.as_value())))),
            x_pend.eq(s.x_valid & ~x_block & (x_entry.mask | self.held.bit_select(x_vf, 1))),
            s.x_deliver.eq(s.x_valid & ~x_block & ~x_pend),
        ]
        with m.If(x_pend):
            m.d.sync += s.pending.bit_select(s.x_handle, 1).eq(1)
            with m.If(s.pending.bit_select(s.x_handle, 1)):
                m.d.sync += self.coalesced_count.eq(self.coalesced_count + 1)
        with m.If(x_block):
            m.d.sync += self.blocked_count.eq(self.blocked_count + 1)
            with m.If(~s.fault_fifo.w_rdy):
                m.d.sync += self.fault_dropped.eq(self.fault_dropped + 1)
        fault_record = Signal(fault_layout(p))
        m.d.comb += [
            s.fault_fifo.w_en.eq(x_block),
            s.fault_fifo.w_data.eq(fault_record),
            fault_record.source_device.eq(s.x_source.device),
            fault_record.source_slot.eq(s.x_source.slot),
            fault_record.vf.eq(x_vf),
            fault_record.vector.eq(x_vector),
            fault_record.reason.eq(Mux(x_present, FaultReason.SOURCE_MISMATCH,
                                       FaultReason.NOT_PRESENT)),
        ]

    def _commands(self, m: Module, s: SimpleNamespace) -> None:
        """WRITE, READ, HOLD, RETARGET, RELEASE; each executes in its accepting cycle."""
        p, stride, held, pending = self.params, s.stride, self.held, s.pending
        ctl, cmd = self.ctl, self.ctl.payload
        m.d.comb += ctl.ready.eq(~s.x_valid & ~s.walk_busy & s.out_fifo.w_rdy)
        ctl_fire = ctl.valid & ctl.ready
        c_handle = Cat(cmd.vector, cmd.vf)
        c_vf_ok = cmd.vf < p.n_vfs
        c_entry_ok = self._in_range(cmd.vf, cmd.vector)
        s.c_replay = c_replay = Signal()
        m.d.comb += [
            s.ent_wr.addr.eq(c_handle),
            s.ent_wr.data.mask.eq(cmd.entry.mask),
            s.ent_wr.data.mode.eq(cmd.entry.mode),
            s.ent_wr.data.vm.eq(cmd.entry.vm),
            s.ent_wr.data.guest_vector.eq(cmd.entry.guest_vector),
            s.src_wr.addr.eq(cmd.vf),
            s.ent_ctl.addr.eq(c_handle),
            s.src_ctl.addr.eq(cmd.vf),
            s.ent_ctl.en.eq(0),
            s.src_ctl.en.eq(0),
        ]
        for lane in range(stride):
            m.d.comb += [s.src_wr.data[lane].device.eq(cmd.entry.source_device),
                         s.src_wr.data[lane].slot.eq(cmd.entry.source_slot)]
        s.rd_present = Signal()
        s.rd_vector = Signal(s.vb)
        count_error = self.ctl_errors.eq(self.ctl_errors + 1)
        with m.If(ctl_fire):
            with m.Switch(cmd.op):
                with m.Case(RemapOp.WRITE):
                    with m.If(c_entry_ok):
                        m.d.comb += [s.ent_wr.en.eq(1),
                                     s.src_wr.en.eq(Const(1, stride) << cmd.vector)]
                        m.d.sync += s.present.bit_select(c_handle, 1).eq(cmd.entry.present)
                        # An unmask (or a write making a pending entry present) delivers it.
                        m.d.comb += c_replay.eq(cmd.entry.present & ~cmd.entry.mask
                                                & ~held.bit_select(cmd.vf, 1)
                                                & pending.bit_select(c_handle, 1))
                        with m.If(c_replay):
                            m.d.sync += pending.bit_select(c_handle, 1).eq(0)
                    with m.Else():
                        m.d.sync += count_error
                with m.Case(RemapOp.READ):
                    with m.If(c_entry_ok):
                        m.d.comb += [s.ent_ctl.en.eq(1), s.src_ctl.en.eq(1)]
                        m.d.sync += [s.rd_present.eq(s.present.bit_select(c_handle, 1)),
                                     s.rd_vector.eq(cmd.vector),
                                     self.rd_pending.eq(pending.bit_select(c_handle, 1))]
                    with m.Else():
                        m.d.sync += count_error
                with m.Case(RemapOp.HOLD):
                    with m.If(c_vf_ok):
                        m.d.sync += held.bit_select(cmd.vf, 1).eq(1)
                    with m.Else():
                        m.d.sync += count_error
                with m.Case(RemapOp.RETARGET):
                    with m.If(c_vf_ok):
                        m.d.comb += s.src_wr.en.eq((1 << stride) - 1)
                    with m.Else():
                        m.d.sync += count_error
                with m.Case(RemapOp.RELEASE):
                    with m.If(c_vf_ok):
                        row = pending.word_select(cmd.vf, stride)
                        m.d.sync += [held.bit_select(cmd.vf, 1).eq(0), s.walk_vf.eq(cmd.vf)]
                        if self._fault_inject == "forget_pba":
                            m.d.sync += row.eq(0)
                        else:
                            m.d.sync += [s.walk_todo.eq(row), s.walk_busy.eq(row.any())]
                    with m.Else():
                        m.d.sync += count_error
                with m.Default():
                    m.d.sync += count_error

    def _read_out(self, m: Module, s: SimpleNamespace) -> None:
        """The entry and PBA bit of the last valid READ."""
        rd_stored = s.ent_ctl.data
        rd_source = s.src_ctl.data[s.rd_vector]
        with m.If(s.rd_present):
            m.d.comb += [
                self.rd_entry.present.eq(1),
                self.rd_entry.mask.eq(rd_stored.mask),
                self.rd_entry.mode.eq(rd_stored.mode),
                self.rd_entry.source_device.eq(rd_source.device),
                self.rd_entry.source_slot.eq(rd_source.slot),
                self.rd_entry.vm.eq(rd_stored.vm),
                self.rd_entry.guest_vector.eq(rd_stored.guest_vector),
            ]

    def _replay_walk(self, m: Module, s: SimpleNamespace) -> None:
        """The release replay walk: one pending vector per step, lowest first. Nothing else
        changes the table or the PBA meanwhile (ctl and irq_in wait), so the snapshot of
        the PBA row taken at RELEASE stays exact and a step only checks present and mask."""
        walk_todo = s.walk_todo
        walk_step = Signal()                 # a replay step executes this cycle
        s.walk_vector = walk_vector = Signal(s.vb)
        walk_second = Signal()               # _fault_inject="double_replay" only
        for vector in reversed(range(s.stride)):
            with m.If(walk_todo[vector]):
                m.d.comb += s.walk_issue_vector.eq(vector)
        m.d.comb += s.walk_issue.eq(s.walk_busy & walk_todo.any() & s.out_room2)
        with m.If(s.walk_issue):
            again = Const(0)
            if self._fault_inject == "double_replay":
                again = ~walk_second
                m.d.sync += walk_second.eq(~walk_second)
            with m.If(~again):
                m.d.sync += walk_todo.bit_select(s.walk_issue_vector, 1).eq(0)
        m.d.sync += [walk_step.eq(s.walk_issue), walk_vector.eq(s.walk_issue_vector)]
        with m.If(s.walk_busy & ~s.walk_issue & ~walk_todo.any()):
            m.d.sync += s.walk_busy.eq(0)
        w_handle = Cat(walk_vector, s.walk_vf)
        s.w_deliver = Signal()
        m.d.comb += s.w_deliver.eq(walk_step & s.present.bit_select(w_handle, 1)
                                   & ~s.x_entry.mask)
        with m.If(s.w_deliver):
            m.d.sync += s.pending.bit_select(w_handle, 1).eq(0)

    def _deliver(self, m: Module, s: SimpleNamespace) -> None:
        """The delivery buffer's single write port: the three sources never coincide."""
        out_data, cmd = s.out_data, self.ctl.payload
        with m.If(s.x_deliver):
            m.d.comb += [s.out_fifo.w_en.eq(1), out_data.vm.eq(s.x_entry.vm),
                         out_data.guest_vector.eq(s.x_entry.guest_vector),
                         out_data.vf.eq(s.x_vf), out_data.vector.eq(s.x_vector)]
        with m.Elif(s.w_deliver):
            m.d.comb += [s.out_fifo.w_en.eq(1), out_data.vm.eq(s.x_entry.vm),
                         out_data.guest_vector.eq(s.x_entry.guest_vector),
                         out_data.vf.eq(s.walk_vf), out_data.vector.eq(s.walk_vector)]
        with m.Elif(s.c_replay):
            m.d.comb += [s.out_fifo.w_en.eq(1), out_data.vm.eq(cmd.entry.vm),
                         out_data.guest_vector.eq(cmd.entry.guest_vector),
                         out_data.vf.eq(cmd.vf), out_data.vector.eq(cmd.vector)]
