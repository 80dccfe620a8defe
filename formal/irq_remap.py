"""Formal harness of the interrupt remapper (``hdl/irq_remap.py``).

Formal size: 2 VFs x 2 vectors, 1-bit destinations, 2 fault records. ``irq_out`` is always
taken (assumed), so a delivery decided in cycle t is on ``irq_out`` in t + 1; ``irq_in``,
``ctl`` and ``fault.ready`` are free. The harness keeps its own copy of the table (present,
mask, mode, source id per entry; held per VF; pending per entry), updated from the commands
and interrupts the remapper accepted, as ``model.irq_remap`` defines them. Asserted:

* an interrupt on ``irq_out`` is for an entry that is present, unmasked and whose VF is not
  held, and one the harness *owes*: a valid interrupt raised while deliverable, an unmask of
  a pending entry, or a pending entry of a RELEASEd VF -- so nothing is delivered twice, and
  a source mismatch or a not-present entry is never delivered;
* every owed delivery comes within ``MAX_AGE`` cycles (after RELEASE each pending vector is
  delivered);
* an interrupt whose entry is not present (or out of range) or whose source id does not
  match is counted in ``blocked_count`` when it executes.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cat, Cover, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.irq_remap import IrqRemap, control_layout, raise_layout
from model.irq_remap import RemapOp, ValidationMode

from .core import FormalBlock

__all__ = ["BLOCK", "IrqRemapHarness"]

N_VFS, N_VECTORS = 2, 2
MAX_AGE = 8


class IrqRemapHarness(wiring.Component):
    def __init__(self, fault: str | None = None):
        self.dut = IrqRemap(N_VFS, N_VECTORS, vm_bits=1, guest_vector_bits=1, fault_depth=2,
                            _fault_inject=fault)
        p = self.dut.params
        super().__init__({"irq_valid": In(1), "irq": In(raise_layout(p)),
                          "ctl_valid": In(1), "ctl": In(control_layout(p)),
                          "fault_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.d.comb += [
            dut.irq_in.valid.eq(self.irq_valid), dut.irq_in.payload.eq(self.irq),
            dut.ctl.valid.eq(self.ctl_valid), dut.ctl.payload.eq(self.ctl),
            dut.fault.ready.eq(self.fault_ready), dut.irq_out.ready.eq(1),
            Assume(~ResetSignal()),
        ]
        p = dut.params
        vb, stride = p.vector_bits, p.vector_stride
        handles = [(vf, vec) for vf in range(N_VFS) for vec in range(stride)]
        t = _Table(m, p.n_handles, N_VFS)
        cmd, irq = self.ctl, self.irq
        ctl_fire = dut.ctl.valid & dut.ctl.ready
        in_fire = dut.irq_in.valid & dut.irq_in.ready
        out = dut.irq_out.payload
        out_h = Cat(out.vector, out.vf)
        delivered = Signal(p.n_handles)
        m.d.comb += delivered.eq(dut.irq_out.valid << out_h)
        owe = Signal(p.n_handles)   # this cycle creates an owed delivery of entry h
        irq_vf, irq_vec = irq.handle[vb:], irq.handle[:vb]
        bad_terms = [in_fire & ~((irq_vf < N_VFS) & (irq_vec < N_VECTORS))]
        in_range = (irq_vf < N_VFS) & (irq_vec < N_VECTORS)
        for h, (vf, vec) in enumerate(handles):
            here = in_range & (irq.handle == h)
            source_ok = ((t.mode[h] == ValidationMode.OFF)
                         | ((t.dev[h] == irq.source_device) & (t.slot[h] == irq.source_slot)))
            valid_raise = in_fire & here & t.present[h] & source_ok
            deliverable = t.present[h] & ~t.mask[h] & ~t.held[vf]
            with m.If(valid_raise):
                with m.If(deliverable):
                    m.d.comb += owe[h].eq(1)
                with m.Else():
                    m.d.sync += t.pending[h].eq(1)
            bad_terms.append(in_fire & (irq.handle == h) & ~valid_raise)
            self._command(m, t, cmd, ctl_fire, h, vf, vec, owe)
            # An owed delivery: counted up when owed, down when it appears.
            owed, age = Signal(range(4), name=f"owed_{h}"), Signal(range(16), name=f"age_{h}")
            m.d.sync += owed.eq(owed + owe[h] - delivered[h])
            with m.If(delivered[h] | (owed == 0)):
                m.d.sync += age.eq(0)
            with m.Elif(age != 15):
                m.d.sync += age.eq(age + 1)
            m.d.comb += [
                Assert(~delivered[h] | ((owed != 0) & deliverable)),
                Assert(age < MAX_AGE),
                Cover(delivered[h] & (t.release_seen == 1)),
                Cover(in_fire & here & ~t.present[h]),
            ]
        bad = Signal()              # the accepted interrupt must be blocked
        m.d.comb += bad.eq(Cat(*bad_terms).any())
        bad_q, bad_qq, count_q = Signal(), Signal(), Signal(32)
        m.d.sync += [bad_q.eq(bad), bad_qq.eq(bad_q), count_q.eq(dut.blocked_count)]
        # The interrupt executes the cycle after its acceptance, and the count is up one in
        # the cycle after that: compared with the previous cycle's count (not the one two
        # cycles back, which two blocked interrupts in a row would have raised by 2).
        m.d.comb += [Assert(~bad_qq | (dut.blocked_count == count_q + 1)),
                     Cover(bad_qq), Cover(t.release_seen & (t.pending_any != 0))]
        return m

    @staticmethod
    def _command(m, t, cmd, ctl_fire, h, vf, vec, owe) -> None:
        """The harness table's update by an accepted command, for entry ``h``."""
        entry = cmd.entry
        with m.If(ctl_fire & (cmd.vf == vf)):
            with m.Switch(cmd.op):
                with m.Case(RemapOp.WRITE):
                    with m.If(cmd.vector == vec):
                        m.d.sync += [t.present[h].eq(entry.present), t.mask[h].eq(entry.mask),
                                     t.mode[h].eq(entry.mode), t.dev[h].eq(entry.source_device),
                                     t.slot[h].eq(entry.source_slot)]
                        with m.If(entry.present & ~entry.mask & ~t.held[vf] & t.pending[h]):
                            m.d.comb += owe[h].eq(1)
                            m.d.sync += t.pending[h].eq(0)
                with m.Case(RemapOp.HOLD):
                    m.d.sync += t.held[vf].eq(1)
                with m.Case(RemapOp.RELEASE):
                    m.d.sync += [t.held[vf].eq(0), t.release_seen.eq(1)]
                    with m.If(t.pending[h] & t.present[h] & ~t.mask[h]):
                        m.d.comb += owe[h].eq(1)
                        m.d.sync += t.pending[h].eq(0)
                with m.Case(RemapOp.RETARGET):
                    m.d.sync += [t.dev[h].eq(entry.source_device),
                                 t.slot[h].eq(entry.source_slot)]


class _Table:
    """The harness's copy of the remapping table."""

    def __init__(self, m: Module, n_handles: int, n_vfs: int):
        self.present, self.mask, self.mode, self.pending = (
            Signal(n_handles, name=f"t_{x}") for x in ("present", "mask", "mode", "pending"))
        self.dev = Signal(n_handles, name="t_dev")
        self.slot = [Signal(8, name=f"t_slot_{h}") for h in range(n_handles)]
        self.held = Signal(n_vfs, name="t_held")
        self.release_seen = Signal(name="t_release_seen")
        self.pending_any = self.pending


# flatten + memory_map and `--syn`: BMC to depth 16 in 13 s (68 s with memory_map alone).
BLOCK = FormalBlock("irq_remap", IrqRemapHarness, depth=16, prove_depth=None,
                    cover_depth=12, faults=("double_replay", "forget_pba"),
                    test_depth=9, script=("flatten", "memory_map", "opt -fast"),
                    engine="smtbmc --syn yices")
