"""Placement: which device and slot serve each VF, and the router kept in step with it."""

from __future__ import annotations

from amaranth import Array, Module, Mux
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.config import Device, SystemConfig
from model.router import RouterOp

from ..formats import bits_for


class Placement(wiring.Component):
    """The system's one view of where VF ``v`` lives, from the two engines' per-VF tables.

    Each engine knows which VFs it serves (``here``) and in which slot; during the commit
    handshake both engines say ``here``, and the source (the one with the VF ``outgoing``)
    owns it until COMMIT_ACK.  From that this block derives, per VF, the serving device
    (``at_offload``) and slot (``slot``), whether the router must hold the VF's requests
    (``want_held``), and where its interrupts flow from (``irq_live``/``irq_device``/
    ``irq_slot``).  It is the only driver of the router's table: one command per cycle,
    lowest VF first — HOLD as a drain starts, RELEASE at the VF's place when the hold ends
    (its new place after a commit, its old after an abort), PLACE when a VF moved unheld.
    The profiler's device column and the interrupt path's retargets read the same outputs.

    Members
    -------
    host_here, offload_here, offload_outgoing, host_hold, offload_hold,
    host_irq_live, offload_irq_live : In(n_vfs)          the engines' per-VF outputs
    host_slot, offload_slot : In(ArrayLayout(slot_bits, n_vfs))   the engines' ``slot_of``
    router_held, router_device, router_slot : In         the router's table as it is now
    router_ctl : Out(stream of the router's control layout)   commands (``valid`` only)
    at_offload, want_held : Out(n_vfs); slot : Out(ArrayLayout(8, n_vfs))
    irq_live, irq_device : Out(n_vfs); irq_slot : Out(ArrayLayout(8, n_vfs))

    Latency: combinational; a command's effect shows in the router's table next cycle.
    """

    def __init__(self, config: SystemConfig, router_ctl: data.Layout,
                 router_device_bits: int, router_slot_bits: int):
        if not isinstance(config, SystemConfig):
            raise TypeError(f"Placement config must be a SystemConfig, not {config!r}")
        self.config = config
        n = config.n_vfs
        ports = {f"{dev.label}_{name}": In(n) for dev in Device
                 for name in ("here", "hold", "irq_live")}
        ports |= {f"{dev.label}_slot": In(data.ArrayLayout(bits_for(config.slots(dev)), n))
                  for dev in Device}
        super().__init__(ports | {
            "offload_outgoing": In(n),
            "router_held": In(n),
            "router_device": In(data.ArrayLayout(router_device_bits, n)),
            "router_slot": In(data.ArrayLayout(router_slot_bits, n)),
            "router_ctl": Out(stream.Signature(router_ctl)),
            "at_offload": Out(n), "want_held": Out(n),
            "slot": Out(data.ArrayLayout(8, n)),
            "irq_live": Out(n), "irq_device": Out(n),
            "irq_slot": Out(data.ArrayLayout(8, n)),
        })

    def elaborate(self, platform):
        m = Module()
        n_vfs = self.config.n_vfs
        at_offload = self.at_offload
        m.d.comb += [
            at_offload.eq(self.offload_here & (~self.host_here | self.offload_outgoing)),
            self.want_held.eq(self.host_hold | self.offload_hold),
            self.irq_live.eq(self.host_irq_live | self.offload_irq_live),
            self.irq_device.eq(self.offload_irq_live),
        ]
        for v in range(n_vfs):
            m.d.comb += [
                self.slot[v].eq(Mux(at_offload[v], self.offload_slot[v], self.host_slot[v])),
                self.irq_slot[v].eq(Mux(self.offload_irq_live[v], self.offload_slot[v],
                                        self.host_slot[v])),
            ]

        slot_now = Array(self.slot[v] for v in range(n_vfs))
        ctl, held = self.router_ctl.payload, self.router_held
        for v in reversed(range(n_vfs)):
            moved = ((self.router_device[v] != at_offload[v])
                     | (self.router_slot[v] != slot_now[v]))
            with m.If(self.want_held[v] != held[v]):
                m.d.comb += [self.router_ctl.valid.eq(1), ctl.vf.eq(v),
                             ctl.op.eq(Mux(self.want_held[v], RouterOp.HOLD, RouterOp.RELEASE)),
                             ctl.device.eq(at_offload[v]), ctl.slot.eq(slot_now[v])]
            with m.Elif(~self.want_held[v] & moved):
                m.d.comb += [self.router_ctl.valid.eq(1), ctl.vf.eq(v), ctl.op.eq(RouterOp.PLACE),
                             ctl.device.eq(at_offload[v]), ctl.slot.eq(slot_now[v])]
        return m
