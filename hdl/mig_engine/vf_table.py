"""The per-VF table of one device's migration engine: where each VF is and its VFIO state."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.common import check_int
from model.vfio import DeviceState

from ..formats import bits_for

S = DeviceState
SERVING = (S.RUNNING, S.RUNNING_P2P, S.PRE_COPY, S.PRE_COPY_P2P)  # the VF answers requests
INTERRUPTING = (S.RUNNING, S.PRE_COPY)                          # the VF may raise interrupts
HELD = (S.STOP, S.STOP_COPY, S.RESUMING)                        # the router holds requests


def in_states(value, states):
    """``value`` is one of ``states`` (a 1-bit value)."""
    return value.matches(*(int(s) for s in states))


def table_write_layout(n_vfs: int, n_slots: int) -> data.StructLayout:
    """One write into the table: the fields of VF ``vf`` whose ``*_we`` is set."""
    return data.StructLayout({
        "vf": bits_for(n_vfs),
        "state_we": 1, "state": 3, "requested_we": 1, "requested": 3,
        "here_we": 1, "here": 1, "present_we": 1, "present": 1,
        "slot_we": 1, "slot": bits_for(n_slots)})


class VfTable(wiring.Component):
    """The VFIO state, requested state, slot and presence of every VF on one device, and
    what the VF units and the router must do about them.

    Every VF starts on the host (``starts_here``) in RUNNING, VF ``v`` in slot ``v``; on the
    offload device every VF starts absent, in STOP.

    Members
    -------
    src_wr, tgt_wr : In(table_write_layout)   writes of the source role (the walker) and of
        the target role (the receiver); they take effect the next cycle.  When both write
        the same field of the same VF, ``tgt_wr`` wins.
    state, requested : Out(ArrayLayout(3, n_vfs))   VFIO device state, last requested state
    here : Out(n_vfs)       the VF is served from this device
    present : Out(n_vfs)    the VF is here or being received here (it holds a slot)
    slot : Out(ArrayLayout(slot_bits, n_vfs))
    draining, draining_vf : In   the walker is draining that VF (its requests are held and
        its slot is quiesced while the arc waits for the request in service)
    hold, irq_live : Out(n_vfs)  the router holds the VF's requests; the VF's interrupts
        flow from its slot here (RUNNING or PRE_COPY)
    quiesce, irq_hold : Out(n_slots); slot_vf : Out(ArrayLayout(vf_bits, n_slots))
        VF-unit control per slot (a free slot stays quiesced and interrupt-held)
    free_slot, have_free : Out   the lowest free slot, and whether there is one

    Latency: writes show one cycle later; every other output is combinational.
    """

    def __init__(self, n_vfs: int, n_slots: int, starts_here: bool):
        check_int("VfTable", "n_vfs", n_vfs, 1)
        check_int("VfTable", "n_slots", n_slots, 1)
        self.n_vfs, self.n_slots, self.starts_here = n_vfs, n_slots, bool(starts_here)
        vf_bits, slot_bits = bits_for(n_vfs), bits_for(n_slots)
        write = table_write_layout(n_vfs, n_slots)
        here = int(self.starts_here)
        super().__init__({
            "src_wr": In(write), "tgt_wr": In(write),
            "state": Out(data.ArrayLayout(3, n_vfs), init=[
                int(S.RUNNING) if here else int(S.STOP)] * n_vfs),
            "requested": Out(data.ArrayLayout(3, n_vfs), init=[int(S.RUNNING)] * n_vfs),
            "here": Out(n_vfs, init=(1 << n_vfs) - 1 if here else 0),
            "present": Out(n_vfs, init=(1 << n_vfs) - 1 if here else 0),
            "slot": Out(data.ArrayLayout(slot_bits, n_vfs),
                        init=[v if here else 0 for v in range(n_vfs)]),
            "draining": In(1), "draining_vf": In(vf_bits),
            "hold": Out(n_vfs), "irq_live": Out(n_vfs),
            "quiesce": Out(n_slots), "irq_hold": Out(n_slots),
            "slot_vf": Out(data.ArrayLayout(vf_bits, n_slots)),
            "free_slot": Out(slot_bits), "have_free": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        self._writes(m)
        n_vfs, n_slots = self.n_vfs, self.n_slots
        for v in range(n_vfs):
            draining_v = self.draining & (self.draining_vf == v)
            m.d.comb += [
                self.irq_live[v].eq(self.present[v] & in_states(self.state[v], INTERRUPTING)),
                self.hold[v].eq(self.here[v] & (in_states(self.state[v], HELD) | draining_v)),
            ]
        for s in range(n_slots):
            serving = Signal(name=f"serving_{s}")
            interrupting = Signal(name=f"interrupting_{s}")
            for v in range(n_vfs):
                on_slot = self.present[v] & (self.slot[v] == s)
                with m.If(on_slot):
                    m.d.comb += self.slot_vf[s].eq(v)
                with m.If(on_slot & self.here[v] & in_states(self.state[v], SERVING)
                          & ~(self.draining & (self.draining_vf == v))):
                    m.d.comb += serving.eq(1)
                with m.If(on_slot & in_states(self.state[v], INTERRUPTING)):
                    m.d.comb += interrupting.eq(1)
            # Free slots stay quiesced and interrupt-held: a freed source slot keeps its
            # (migrated) PBA bits, which must never be replayed from here.
            m.d.comb += [self.quiesce[s].eq(~serving), self.irq_hold[s].eq(~interrupting)]

        for s in reversed(range(n_slots)):
            used = Signal(name=f"used_{s}")
            for v in range(n_vfs):
                with m.If(self.present[v] & (self.slot[v] == s)):
                    m.d.comb += used.eq(1)
            with m.If(~used):
                m.d.comb += [self.free_slot.eq(s), self.have_free.eq(1)]
        return m

    def _writes(self, m: Module) -> None:
        # The target port is applied last so that it wins, as the receiver's writes did
        # when both roles lived in one module.
        fields = (("state", self.state), ("requested", self.requested), ("here", self.here),
                  ("present", self.present), ("slot", self.slot))
        for port in (self.src_wr, self.tgt_wr):
            for v in range(self.n_vfs):
                for name, table in fields:
                    with m.If(getattr(port, f"{name}_we") & (port.vf == v)):
                        m.d.sync += table[v].eq(getattr(port, name))
