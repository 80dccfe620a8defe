"""Formal harness of the VFIO v2 walker (``hdl/mig_engine/walker.py``).

The reference arcs are VFIO v2's direct arcs as ``include/uapi/linux/vfio.h`` lists them
(written out below, not taken from the walker's ROM); for a device lacking some states an
arc may pass through states it does not provide (VFIO: "the unsupported states are
skipped"), so the arcs of a flag set are the paths of the direct-arc graph between provided
states whose inner states are all missing. Which request is valid is ``model.vfio``'s
``next_state``. Formal size: every flag set is small (8 states); ``FLAGS`` is checked.

Assumed: the request's ``current`` is a state the device provides other than ERROR (the
engine passes the VF's state; a VF in ERROR is reset, not walked). ``arc.ready`` and the
requests are free. Asserted:

* ``state`` and ``target`` are always states the flags provide, and VFIO has an arc
  sequence from ``state`` to ``target``;
* every arc offered starts at ``state`` and is a direct arc for the flags; ``state`` moves
  only along an offered, taken arc or by a request;
* an invalid request raises ``error`` and leaves ``state`` and ``target`` unchanged; a valid
  one does not raise it and loads them.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.mig_engine.walker import VfioWalker, WalkRequest
from model.vfio import ALL_FLAGS, DeviceState, MigrationFlags, next_state, supported_states

from .core import FormalBlock

__all__ = ["BLOCK", "VfioWalkerHarness", "DIRECT_ARCS", "arcs_for"]

S = DeviceState
FLAGS = ALL_FLAGS

#: VFIO v2's direct arcs (vfio.h, "The FSM takes actions on the arcs between FSM states").
DIRECT_ARCS = frozenset({
    (S.RUNNING_P2P, S.STOP), (S.STOP_COPY, S.STOP), (S.RUNNING, S.RUNNING_P2P),
    (S.PRE_COPY, S.RUNNING), (S.PRE_COPY_P2P, S.RUNNING_P2P), (S.STOP, S.RUNNING_P2P),
    (S.RUNNING_P2P, S.RUNNING), (S.RUNNING, S.PRE_COPY), (S.RUNNING_P2P, S.PRE_COPY_P2P),
    (S.PRE_COPY, S.PRE_COPY_P2P), (S.PRE_COPY_P2P, S.PRE_COPY), (S.PRE_COPY_P2P, S.STOP_COPY),
    (S.STOP, S.STOP_COPY), (S.STOP, S.RESUMING), (S.RESUMING, S.STOP),
})


def arcs_for(flags: MigrationFlags) -> frozenset[tuple[DeviceState, DeviceState]]:
    """The arcs of a device with ``flags``: direct-arc paths between provided states whose
    inner states the device lacks."""
    have = supported_states(flags)
    arcs = set()
    for src in have:
        frontier, seen = [src], {src}
        while frontier:
            here = frontier.pop()
            for a, b in DIRECT_ARCS:
                if a != here or b in seen:
                    continue
                seen.add(b)
                if b in have:
                    arcs.add((src, b))
                else:
                    frontier.append(b)
    return frozenset(arcs)


def _one_of(value, pairs) -> object:
    terms = [(value == (int(a) | int(b) << 3)) for a, b in pairs]
    result = terms[0]
    for term in terms[1:]:
        result = result | term
    return result


class VfioWalkerHarness(wiring.Component):
    def __init__(self, fault: str | None = None):
        self.dut = VfioWalker(FLAGS, _fault_inject=fault)
        super().__init__({"req_valid": In(1), "req": In(WalkRequest), "arc_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        have = sorted(supported_states(FLAGS))
        valid_pairs = [(c, t) for c in have for t in have
                       if c == t or next_state(c, t, FLAGS) != S.ERROR]
        req = self.req
        m.d.comb += [dut.request.valid.eq(self.req_valid), dut.request.payload.eq(req),
                     dut.arc.ready.eq(self.arc_ready), Assume(~ResetSignal())]
        provided = lambda v: _one_of(v, [(s, S.ERROR) for s in have])  # noqa: E731
        # A VF in ERROR is reset, not walked; see docs/formal.md for ERROR -> ERROR.
        m.d.comb += Assume(provided(req.current) & (req.current != S.ERROR))
        req_ok = _one_of(req.as_value(), valid_pairs) & (req.target != S.ERROR)
        pair = dut.state | (dut.target << 3)
        arc = dut.arc.payload
        m.d.comb += [
            Assert(provided(dut.state) & provided(dut.target)),
            Assert(_one_of(pair, [p for p in valid_pairs if p[1] != S.ERROR])),
            Assert(~dut.arc.valid | ((arc.src == dut.state)
                                     & _one_of(arc.as_value(), arcs_for(FLAGS)))),
            Assert(~self.req_valid | (dut.error == ~req_ok)),
        ]
        prev_state, prev_target = Signal(3), Signal(3)
        prev_req, prev_ok, prev_taken = Signal(), Signal(), Signal()
        started = Signal()      # the prev_* registers hold a real cycle (not the first)
        prev_cur, prev_tgt, prev_dst = Signal(3), Signal(3), Signal(3)
        m.d.sync += [started.eq(1), prev_state.eq(dut.state), prev_target.eq(dut.target),
                     prev_req.eq(self.req_valid), prev_ok.eq(req_ok),
                     prev_cur.eq(req.current), prev_tgt.eq(req.target),
                     prev_taken.eq(dut.arc.valid & dut.arc.ready), prev_dst.eq(arc.dst)]
        unchanged = (dut.state == prev_state) & (dut.target == prev_target)
        m.d.comb += [
            Assert(~(prev_req & ~prev_ok) | unchanged),
            Assert(~(prev_req & prev_ok) | ((dut.state == prev_cur)
                                            & (dut.target == prev_tgt))),
            Assert(~started | prev_req | (dut.target == prev_target)),
            Assert(~started | prev_req | (dut.state == prev_state)
                   | (prev_taken & (dut.state == prev_dst))),
            Cover(self.req_valid & ~req_ok),
        ]
        for a, b in sorted(arcs_for(FLAGS)):
            m.d.comb += Cover(dut.arc.valid & dut.arc.ready & (arc.src == a) & (arc.dst == b))
        return m


BLOCK = FormalBlock("vfio_walker", VfioWalkerHarness, depth=12, prove_depth=4,
                    cover_depth=10, faults=("illegal_arc",), test_depth=6)
