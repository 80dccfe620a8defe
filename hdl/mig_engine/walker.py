"""The VFIO migration v2 arc walker: one request at a time, one legal arc per step."""

from __future__ import annotations

from amaranth import Array, Const, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.common import check_fault_inject
from model.vfio import DeviceState, MigrationFlags, next_state, supported_states

S = DeviceState
FAULTS = ("illegal_arc",)

#: A walk request: the VF's state now and the state the driver asks for.
WalkRequest = data.StructLayout({"current": 3, "target": 3})
#: One arc of a walk: ``src`` -> ``dst``.
Arc = data.StructLayout({"src": 3, "dst": 3})


def hop_rom(flags: MigrationFlags) -> list[int]:
    """``rom[current * 8 + target]``: VFIO's next state from ``current`` toward ``target``
    for a device with ``flags`` (ERROR, 0, where the request is invalid)."""
    return [int(next_state(S(c), S(t), flags)) if c and t else 0
            for c in range(8) for t in range(8)]


class VfioWalker(wiring.Component):
    """Walk one VF's VFIO v2 device state toward a requested state, one arc per handshake.

    The arcs are VFIO's (``vfio_mig_get_next_state``) resolved for ``flags`` by
    :func:`model.vfio.next_state`: states the device lacks are skipped, never entered.  The
    walker decides *which* arc comes next; whoever drives ``arc.ready`` performs the arc's
    action (quiesce, open a migration, stop-copy, ...) and accepts the arc when it is done.

    Members
    -------
    request : In(stream of WalkRequest)   always ready; a taken request (``valid``) loads
        ``state`` from ``current`` and ``target`` from ``target``, except that an invalid
        one (``target`` is ERROR, or VFIO has no arc sequence from ``current``) changes
        nothing and raises ``error``.  ``current == target`` is a valid no-op unless it is
        ERROR.  A request
        while a walk is under way restarts the walk from ``current`` (a rollback).
    error : Out(1)    combinational, in the cycle of an invalid request
    state : Out(3)    the walked VF's current state (a register)
    target : Out(3)   where the walk goes (a register)
    arc : Out(stream of Arc)   the next arc, ``src == state``; ``valid`` whenever
        ``state != target``.  ``state`` becomes ``dst`` the cycle after ``valid & ready``.
    busy : Out(1)     ``state != target`` (the same as ``arc.valid``)

    Latency: ``arc`` is valid the cycle after the request that starts a walk; each arc
    taken moves ``state`` one cycle later, and the next arc is offered at once.

    ``_fault_inject="illegal_arc"`` (tests only) plants a bug: from STOP_COPY toward
    RUNNING the walker goes straight to RUNNING, an arc VFIO v2 never allows.
    """

    def __init__(self, flags: MigrationFlags, _fault_inject: str | None = None):
        try:
            supported_states(MigrationFlags(flags))
        except ValueError as err:
            raise ValueError(f"VfioWalker flags: {err}") from None
        self.flags = MigrationFlags(flags)
        self._fault_inject = check_fault_inject("VfioWalker", _fault_inject, FAULTS)
        super().__init__({
            "request": In(stream.Signature(WalkRequest, always_ready=True)),
            "error": Out(1),
            "state": Out(3, init=int(S.RUNNING)),
            "target": Out(3, init=int(S.RUNNING)),
            "arc": Out(stream.Signature(Arc)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        rom = hop_rom(self.flags)
        if self._fault_inject == "illegal_arc":
            rom[S.STOP_COPY * 8 + S.RUNNING] = int(S.RUNNING)
        hops = Array(Const(value, 3) for value in rom)

        req = self.request.payload
        req_hop = Signal(3)
        m.d.comb += req_hop.eq(hops[req.current * 8 + req.target])
        with m.If(self.request.valid):
            # ERROR is never a state a user may ask for, not even from ERROR itself
            invalid = (req.target == S.ERROR) | ((req_hop == S.ERROR) & (req.current != req.target))
            with m.If(invalid):
                m.d.comb += self.error.eq(1)
            with m.Else():
                m.d.sync += [self.state.eq(req.current), self.target.eq(req.target)]

        m.d.comb += [
            self.busy.eq(self.state != self.target),
            self.arc.valid.eq(self.busy),
            self.arc.payload.src.eq(self.state),
            self.arc.payload.dst.eq(hops[self.state * 8 + self.target]),
        ]
        with m.If(self.arc.valid & self.arc.ready & ~self.request.valid):
            m.d.sync += self.state.eq(self.arc.payload.dst)
        return m
