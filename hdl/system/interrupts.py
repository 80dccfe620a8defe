"""The interrupt path: both devices' MSI-X messages through the interrupt remapper to the
VMs, and the remapper entries of a moving VF held, retargeted and released."""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.config import Device, SystemConfig
from model.irq_remap import RemapOp
from model.regmap import (
    IRQ_FAULT_FIELDS,
    IRTE_CMD_OP,
    IRTE_CMD_VECTOR,
    IRTE_CMD_VF,
    IRTE_DATA_PENDING,
)

from ..formats import system_irq_layout
from ..irq_remap import (
    IrqRemap,
    control_layout,
    entry_layout,
    handle_from_msi_address,
    raise_layout,
)

#: The remapper registers (model/regmap.py) this block answers.
IRQ_REGS = ("IRTE_CMD", "IRTE_DATA", "IRQ_FAULT", "IRQ_RAISED", "IRQ_DELIVERED",
            "IRQ_BLOCKED", "IRQ_COALESCED", "IRQ_FAULTS_DROPPED")


def field(word, lsb_width):
    lsb, width = lsb_width
    return word[lsb:lsb + width]


def irq_trace_layout(config: SystemConfig) -> data.StructLayout:
    """What the remapper accepted in a cycle: an interrupt (``raised``: {handle, source
    device and slot}, not the unused MSI data; ``raiser``: the VF of the slot that sent
    it) and a command (``command``: {op, vf, vector, entry}). Read by scoreboards, which
    replay it into ``model.irq_remap.GoldenIrqRemap``."""
    params = config.irq_remap
    raised = {name: fld.shape for name, fld in raise_layout(params) if name != "data"}
    return data.StructLayout({"raised": 1, "raise_": data.StructLayout(raised),
                              "raiser": params.vf_bits,
                              "command": 1, "ctl": control_layout(params)})


class InterruptPath(wiring.Component):
    """Each unit's MSI-X messages get their source id (device, slot) and the handle their
    address names, pass the remapper (hdl/irq_remap.py) and leave on ``irq`` as
    {vm, guest_vector, vf, vector}. A message is the VF's whose entries expect it from
    that place; one from a place no VF's entries expect waits at the unit.

    A migrating VF's entries follow its interrupts: when neither device has the VF
    interrupting (``irq_live`` low: its P2P and stop states) the remapper HOLDs it, so a
    message still in flight from the source goes pending, validated against the old
    source; when a device starts interrupting it at a new place (``irq_device``,
    ``irq_slot``), the remapper RETARGETs the entries (after no message from the old slot
    is still offered, and once no other VF's entries expect the new place) and RELEASEs
    the VF, replaying what went pending exactly once. Until
    the RETARGET, messages from the new place wait at the unit, so none is judged against
    the old source. An abort makes the source interrupt again at the same place: RELEASE
    without RETARGET.  A command written to IRTE_CMD goes first; else the VF moves, lowest
    VF first, one per cycle.

    Members
    -------
    host_irq, offload_irq : In(stream of ``irq_layouts[device]``)   each device's MSI-X
        messages (the offload device's as the I/O tunnel delivers them on the host)
    irq_live, irq_device : In(n_vfs); irq_slot : In(ArrayLayout(8, n_vfs))   placement
    w_irte_cmd, w_irte_data, rd_irq_fault : In(1); wdata : In(32)   register accesses
    irq : Out(stream of system_irq_layout); irq_trace : Out(irq_trace_layout)
    irte_cmd, irte_data, irq_fault, irq_raised, ... : Out(32)   ``IRQ_REGS`` read values

    Latency: the remapper's (hdl/irq_remap.py); the merge of the two devices alternates
    priority when both offer a message.
    """

    def __init__(self, config: SystemConfig, irq_layouts: dict[Device, data.Layout]):
        if not isinstance(config, SystemConfig):
            raise TypeError(f"InterruptPath config must be a SystemConfig, not {config!r}")
        self.config = config
        n = config.n_vfs
        ports = {}
        for dev in Device:
            ports[f"{dev.label}_irq"] = In(stream.Signature(irq_layouts[dev]))
        ports |= {name.lower(): Out(32) for name in IRQ_REGS}
        super().__init__(ports | {
            "irq_live": In(n), "irq_device": In(n), "irq_slot": In(data.ArrayLayout(8, n)),
            "w_irte_cmd": In(1), "w_irte_data": In(1), "rd_irq_fault": In(1),
            "wdata": In(32),
            "irq": Out(stream.Signature(system_irq_layout(config))),
            "irq_trace": Out(irq_trace_layout(config)),
        })

    def elaborate(self, platform):
        m = Module()
        params = self.config.irq_remap
        m.submodules.irq_remap = remap = IrqRemap(params.n_vfs, params.n_vectors,
                                                   fault_depth=params.fault_depth)
        irqs = {dev: getattr(self, f"{dev.label}_irq") for dev in Device}

        # Where each VF's entries expect their interrupts from (reset: host slot v): the
        # remapper's entries, mirrored to gate the units' messages.
        n_vfs = self.config.n_vfs
        src_dev = Signal(n_vfs)
        src_slot = Array(Signal(8, name=f"irq_src_slot_{v}", init=v) for v in range(n_vfs))
        # A message belongs to the VF whose entries expect it from its place (device, slot),
        # not to the VF the slot table names now: a message raised before its slot was freed
        # can still wait here (the remapper backpressured) when the slot is empty or another
        # VF's. A RETARGET never gives two VFs one place, so the owner is unique.
        gated, senders = [], []
        for dev, source in irqs.items():
            owner = [self._expects(src_dev, src_slot, v, int(dev), source.payload.slot)
                     for v in range(n_vfs)]
            sender = Signal(params.vf_bits, name=f"{dev.label}_irq_owner")
            for v in reversed(range(n_vfs)):
                with m.If(owner[v]):
                    m.d.comb += sender.eq(v)
            allowed = Cat(owner).any()
            gate = stream.Signature(source.payload.shape()).create(path=(f"{dev.label}_irq_g",))
            m.d.comb += [gate.valid.eq(source.valid & allowed), gate.payload.eq(source.payload),
                         source.ready.eq(gate.ready & allowed)]
            gated.append(gate)
            senders.append(sender)
        # The sender of the chosen message, for the trace; a signal of its own because a
        # field computed from another field of the trace port is a combinational loop at
        # the port's level (Verilator then evaluates it once, stale: the raiser was wrong).
        sender = Signal(params.vf_bits)
        self._merge(m, "irq", gated, remap.irq_in,
                    lambda d, p: [sender.eq(senders[d]),
                                  remap.irq_in.payload.handle.eq(
                                      handle_from_msi_address(p.addr, params.handle_bits)),
                                  remap.irq_in.payload.data.eq(p.data),
                                  remap.irq_in.payload.source_device.eq(int(d)),
                                  remap.irq_in.payload.source_slot.eq(p.slot)])
        wiring.connect(m, remap.irq_out, wiring.flipped(self.irq))
        self._commands(m, remap, irqs, src_dev, src_slot)
        self._trace_and_registers(m, remap, sender)
        return m

    def _commands(self, m, remap, irqs, src_dev, src_slot):
        """A pending IRTE_CMD command first, else the VF moves (lowest VF first)."""
        params = self.config.irq_remap
        ctl = remap.ctl.payload
        csr_pending, csr_refused = Signal(), Signal()
        csr_op, csr_vf, csr_vector = Signal(3), Signal(params.vf_bits), Signal(params.vector_bits)
        staged = Signal(entry_layout(params))
        wdata = self.wdata
        with m.If(self.w_irte_data):
            m.d.sync += staged.eq(wdata)
        with m.If(self.w_irte_cmd & ~csr_pending):
            op = field(wdata, IRTE_CMD_OP)
            ok = ((op == RemapOp.WRITE) | (op == RemapOp.READ))
            m.d.sync += [csr_pending.eq(ok), csr_refused.eq(~ok), csr_op.eq(op),
                         csr_vf.eq(field(wdata, IRTE_CMD_VF)),
                         csr_vector.eq(field(wdata, IRTE_CMD_VECTOR))]
        m.d.comb += self.irte_cmd.eq(Cat(csr_pending, csr_refused))
        with m.If(csr_pending):
            m.d.comb += [remap.ctl.valid.eq(1), ctl.op.eq(csr_op), ctl.vf.eq(csr_vf),
                         ctl.vector.eq(csr_vector), ctl.entry.eq(staged)]
            with m.If(remap.ctl.ready):
                m.d.sync += csr_pending.eq(0)
        with m.Else():
            for v in reversed(range(self.config.n_vfs)):
                live_off, live = self.irq_device[v], self.irq_live[v]
                live_slot = self.irq_slot[v]
                at_source = self._expects(src_dev, src_slot, v, live_off, live_slot)
                offered = Mux(src_dev[v], self._offers(irqs[Device.OFFLOAD], src_slot[v]),
                              self._offers(irqs[Device.HOST], src_slot[v]))
                held = remap.held[v]
                # the new place still expected by another VF (its old messages not all in)
                taken = Cat(self._expects(src_dev, src_slot, w, live_off, live_slot)
                            for w in range(self.config.n_vfs) if w != v).any()
                command = Signal(RemapOp, name=f"irq_cmd_{v}")
                want = Signal(name=f"irq_want_{v}")
                with m.If(~held & (~live | ~at_source)):
                    m.d.comb += [want.eq(1), command.eq(RemapOp.HOLD)]
                with m.Elif(held & live & ~at_source & ~offered & ~taken):
                    m.d.comb += [want.eq(1), command.eq(RemapOp.RETARGET)]
                with m.Elif(held & live & at_source):
                    m.d.comb += [want.eq(1), command.eq(RemapOp.RELEASE)]
                with m.If(want):
                    m.d.comb += [remap.ctl.valid.eq(1), ctl.op.eq(command), ctl.vf.eq(v),
                                 ctl.entry.source_device.eq(live_off),
                                 ctl.entry.source_slot.eq(live_slot)]
                    with m.If(remap.ctl.ready & (command == RemapOp.RETARGET)):
                        m.d.sync += [src_dev[v].eq(live_off), src_slot[v].eq(live_slot)]

    def _trace_and_registers(self, m, remap, sender):
        # The trace for scoreboards: what the remapper accepted this cycle (fields are zero
        # in a cycle without the event: no X reaches a scoreboard). The conditions are
        # signals of their own, never read back from the trace port (see ``sender``).
        trace = self.irq_trace
        raised, command = Signal(), Signal()
        m.d.comb += [raised.eq(remap.irq_in.valid & remap.irq_in.ready),
                     command.eq(remap.ctl.valid & remap.ctl.ready),
                     trace.raised.eq(raised), trace.command.eq(command)]
        with m.If(raised):
            m.d.comb += [getattr(trace.raise_, name).eq(getattr(remap.irq_in.payload, name))
                         for name, _ in trace.raise_.shape()]
            m.d.comb += trace.raiser.eq(sender)
        with m.If(command):
            m.d.comb += trace.ctl.eq(remap.ctl.payload)

        fault = remap.fault.payload
        m.d.comb += remap.fault.ready.eq(self.rd_irq_fault)
        for name, (lsb, width) in IRQ_FAULT_FIELDS.items():
            value = remap.fault.valid if name == "valid" else getattr(fault, name)
            m.d.comb += self.irq_fault[lsb:lsb + width].eq(value)
        m.d.comb += [
            self.irte_data.eq(remap.rd_entry.as_value() | (remap.rd_pending << IRTE_DATA_PENDING)),
            self.irq_raised.eq(remap.raised_count), self.irq_delivered.eq(remap.delivered_count),
            self.irq_blocked.eq(remap.blocked_count),
            self.irq_coalesced.eq(remap.coalesced_count),
            self.irq_faults_dropped.eq(remap.fault_dropped),
        ]

    @staticmethod
    def _expects(src_dev, src_slot, vf, device, slot):
        """VF ``vf``'s entries expect its interrupts from (``device``, ``slot``)."""
        return (src_dev[vf] == device) & (src_slot[vf] == slot)

    @staticmethod
    def _offers(irq, slot):
        """The interrupt stream ``irq`` offers a message from ``slot`` this cycle."""
        return irq.valid & (irq.payload.slot == slot)

    @staticmethod
    def _merge(m, name, sources, sink, translate):
        """Merge two streams into ``sink``, alternating priority when both are valid."""
        last = Signal(name=f"{name}_last_grant")
        pick = Signal(name=f"{name}_pick")
        m.d.comb += pick.eq(sources[1].valid & (~sources[0].valid | ~last))
        for index, source in enumerate(sources):
            chosen = pick if index else ~pick
            with m.If(chosen):
                m.d.comb += [sink.valid.eq(source.valid), source.ready.eq(sink.ready)]
                m.d.comb += translate(Device(index), source.payload)
        with m.If(sink.valid & sink.ready):
            m.d.sync += last.eq(pick)
