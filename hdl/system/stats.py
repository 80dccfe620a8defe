"""Per-VF status and statistics: STATUS.error/reason, downtime, the last migration's
figures and the migration counts."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.config import Device, SystemConfig
from model.regmap import DowntimePhase

from ..formats import bits_for
from ..mig_engine.source import done_layout, status_layout


class VfStats(wiring.Component):
    """What the per-VF registers report beyond the engines' live state.

    STATUS.error/reason live here rather than in an engine so that they follow the VF from
    device to device (a refusal in the commit-handshake cycle is not lost); CONTROL's
    CLEAR_ERROR (``clear``) zeroes them.  Downtime counts from the cycle the router holds
    the VF to the cycle its unit can serve it again at its (new) place — after the hold, the
    target may still be replaying the VF's pending interrupts.

    Members
    -------
    host_status, offload_status : In(stream of status_layout).array(2)   each engine's
        ``ctl_status`` and ``walk_status`` (always taken; offload last wins)
    host_done, offload_done : In(stream of done_layout)    each engine's ``done``
    clear : In(1); clear_vf : In(vf_bits)      CLEAR_ERROR for that VF
    want_held, router_held, at_offload : In(n_vfs)   placement and the router's holds
    host_slot, offload_slot : In(ArrayLayout); host_resuming, offload_resuming : In(n_slots)
        the VF's slot on each device, and the units' slots still resuming (VFUnit)
    error, reason : Out(ArrayLayout(4, n_vfs))
    host_phase, host_phase_vf, offload_phase, offload_phase_vf : In   each engine's
        downtime phase and the VF it names
    downtime, words : Out(ArrayLayout(32, n_vfs)); rounds : Out(ArrayLayout(8, n_vfs))
    phases : Out(ArrayLayout(ArrayLayout(32, len(DowntimePhase)), n_vfs))   the downtime
        split by phase: each held cycle counts in exactly one, so they sum to ``downtime``
    committed, aborted : Out(ArrayLayout(16, n_vfs))   (wrap)

    Latency: every output is a register, updated the cycle after its event.
    """

    def __init__(self, config: SystemConfig):
        if not isinstance(config, SystemConfig):
            raise TypeError(f"VfStats config must be a SystemConfig, not {config!r}")
        self.config = config
        n = config.n_vfs
        status = stream.Signature(status_layout(n))
        ports = {}
        for dev in Device:
            slots = config.slots(dev)
            ports |= {f"{dev.label}_status": In(status).array(2),
                      f"{dev.label}_done": In(stream.Signature(done_layout(n))),
                      f"{dev.label}_slot": In(data.ArrayLayout(bits_for(slots), n)),
                      f"{dev.label}_resuming": In(slots),
                      f"{dev.label}_phase": In(3), f"{dev.label}_phase_vf": In(bits_for(n))}
        super().__init__(ports | {
            "clear": In(1), "clear_vf": In(bits_for(n)),
            "want_held": In(n), "router_held": In(n), "at_offload": In(n),
            "error": Out(data.ArrayLayout(4, n)), "reason": Out(data.ArrayLayout(4, n)),
            "downtime": Out(data.ArrayLayout(32, n)), "words": Out(data.ArrayLayout(32, n)),
            "rounds": Out(data.ArrayLayout(8, n)),
            "phases": Out(data.ArrayLayout(data.ArrayLayout(32, len(DowntimePhase)), n)),
            "committed": Out(data.ArrayLayout(16, n)), "aborted": Out(data.ArrayLayout(16, n)),
        })

    def elaborate(self, platform):
        m = Module()
        for v in range(self.config.n_vfs):
            self._downtime(m, v)
        self._done_counts(m)
        with m.If(self.clear):
            m.d.sync += [self.error[self.clear_vf].eq(0), self.reason[self.clear_vf].eq(0)]
        for dev in Device:
            for port in getattr(self, f"{dev.label}_status"):
                m.d.comb += port.ready.eq(1)
                with m.If(port.valid):
                    m.d.sync += [self.error[port.payload.vf].eq(port.payload.error),
                                 self.reason[port.payload.vf].eq(port.payload.reason)]
        return m

    def _downtime(self, m, v):
        """DOWNTIME and its phases for VF ``v``: from the first held cycle until its unit can
        serve it again — unheld, its release replay done (restarted by the next hold)."""
        down = Signal(name=f"down_{v}")
        now_held = self.want_held[v] | self.router_held[v]
        # not "the unit is idle": a VF serving requests again at once is no longer down
        resuming = Mux(self.at_offload[v],
                       self.offload_resuming.bit_select(self.offload_slot[v], 1),
                       self.host_resuming.bit_select(self.host_slot[v], 1))
        phase, phases = self._phase_of(m, v), self.phases[v]
        with m.If(now_held & ~down):
            m.d.sync += [down.eq(1), self.downtime[v].eq(1)]
            m.d.sync += [phases[p].eq(phase == p) for p in DowntimePhase]
        with m.Elif(down):
            with m.If(now_held | resuming):
                m.d.sync += [self.downtime[v].eq(self.downtime[v] + 1),
                             phases[phase].eq(phases[phase] + 1)]
            with m.Else():
                m.d.sync += down.eq(0)

    def _phase_of(self, m, v):
        """The phase VF ``v``'s hold is in: the one an engine names for it, else RELEASE."""
        phase = Signal(3, name=f"phase_{v}")
        m.d.comb += phase.eq(DowntimePhase.RELEASE)
        for dev in Device:
            named = getattr(self, f"{dev.label}_phase")
            with m.If((getattr(self, f"{dev.label}_phase_vf") == v)
                      & (named != DowntimePhase.RELEASE)):
                m.d.comb += phase.eq(named)
        return phase

    def _done_counts(self, m):
        """The last migration's rounds and words, and the committed/aborted counts."""
        for dev in Device:
            done = getattr(self, f"{dev.label}_done")
            vf = done.payload.vf
            m.d.comb += done.ready.eq(1)
            with m.If(done.valid):
                m.d.sync += [self.rounds[vf].eq(done.payload.rounds),
                             self.words[vf].eq(done.payload.words)]
                with m.If(done.payload.committed):
                    m.d.sync += self.committed[vf].eq(self.committed[vf] + 1)
                with m.Else():
                    m.d.sync += self.aborted[vf].eq(self.aborted[vf] + 1)
