"""The vfmig system top: host and offload VF units, their DMAs and migration engines."""

from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.config import Device, SystemConfig
from model.irq_remap import RemapOp
from model.regmap import (
    ADDR_BITS,
    CONTROL_CLEAR_ERROR,
    CONTROL_COMMIT,
    GLOBAL,
    ID_VALUE,
    IRQ_FAULT_FIELDS,
    IRTE_CMD_OP,
    IRTE_CMD_VECTOR,
    IRTE_CMD_VF,
    IRTE_DATA_PENDING,
    LINK_STAT_NAMES,
    LOCATION_MIGRATING,
    PROFILER_BASE,
    PROFILER_ROW_STRIDE,
    VF,
    VF_BASE,
    VF_STRIDE,
)
from model.router import RouterOp

from .csr import AxiLiteSlave, axil_signature, regmap_mapped
from .dma import DMA
from .formats import bits_for, system_irq_layout, system_request_layout, system_response_layout
from .io_tunnel import IoTunnelDevice, IoTunnelHost
from .irq_remap import (
    IrqRemap,
    control_layout,
    entry_layout,
    handle_from_msi_address,
    raise_layout,
)
from .link import LinkPort, wire_signature
from .mig_engine import MigEngine
from .profiler import PROFILER_DEVICE_REGS, PROFILER_VF_REGS, Profiler
from .router import Router
from .vf_unit import VFUnit

LINK_WIDTH = 64                      # flit bits of the link between the two devices
FAULTS = ("corrupt_state_write",)    # deliberate design faults, for the tests that catch them


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


class System(wiring.Component):
    """Two devices that move VFs between each other at runtime (DESIGN §3).

    Every VF starts RUNNING on the host (VF i in host slot i).  Requests name a stable VF
    id; the router (hdl/router.py) sends each to the device and slot serving the VF, queues
    (in order, never dropping) the requests of a VF in its switchover downtime while the
    other VFs keep flowing, and answers unknown VF ids with an error response.

    The devices are joined by a link (hdl/link.py: one ``LinkPort`` per device) whose two
    wires are ports of this top, so a testbench closes them (tb/common/link_fault.py) and
    may corrupt, drop, duplicate or delay flits. The migration engines talk only over its
    TC_MIG class; requests, responses and interrupts of VFs placed on the offload device
    cross it as TC_IO messages (hdl/io_tunnel.py).

    Parameters
    ----------
    config : SystemConfig
    _fault_inject : None or "corrupt_state_write"
        A deliberate fault for the tests that must catch it: "corrupt_state_write" flips
        bit 0 of every state-port write to image word 0 (on either device) until the first
        migration ends, i.e. data that passed the link and chunk CRCs is wrong in the
        target's image, so its digest check at SWITCHOVER must abort that migration.

    Members
    -------
    req : In(stream of system_request_layout)     VM requests {vf, op, addr, data, tag}
    resp : Out(stream of system_response_layout)  {vf, tag, data, error}; in order per VF
    irq : Out(stream of system_irq_layout)        remapped interrupts {vm, guest_vector, vf,
        vector}: the units' MSI-X messages after the interrupt remapper (hdl/irq_remap.py)
    irq_trace : Out(irq_trace_layout)             the remapper's accepted inputs, per cycle
    axil : In(axil_signature(ADDR_BITS))
        the control plane: AXI4-Lite (hdl/csr.py) onto the register map of model/regmap.py
        (byte addresses, 32-bit registers); unmapped addresses answer DECERR, misaligned
        ones or partial strobes SLVERR, and never reach a register
    h2o_tx : Out(wire_signature(LINK_WIDTH)); h2o_rx : In(...)
        the host -> offload wire: what the host port sends, what the offload port receives
    o2h_tx : Out(...); o2h_rx : In(...)
        the offload -> host wire. A testbench copies each ``*_tx`` to its ``*_rx`` (with
        faults, or with none), the receiving port registers it on entry.

    Latency: a request to a VF on the offload device crosses the link twice (TC_IO, store
    and forward: about 30 cycles on an idle link on top of the unit's service latency);
    the router's in-flight limit and queues give the backpressure, as for the host.
    """

    def __init__(self, config: SystemConfig | None = None, _fault_inject: str | None = None):
        self.config = config = config or SystemConfig()
        if not isinstance(config, SystemConfig):
            raise TypeError(f"System config must be a SystemConfig, not {config!r}")
        if _fault_inject is not None and _fault_inject not in FAULTS:
            raise ValueError(f"System _fault_inject must be None or one of "
                             f"{', '.join(FAULTS)}, not {_fault_inject!r}")
        self.fault_inject = _fault_inject
        wire = wire_signature(LINK_WIDTH)
        super().__init__({
            "req": In(stream.Signature(system_request_layout(config))),
            "resp": Out(stream.Signature(system_response_layout(config))),
            "irq": Out(stream.Signature(system_irq_layout(config))),
            "irq_trace": Out(irq_trace_layout(config)),
            "axil": In(axil_signature(ADDR_BITS)),
            "h2o_tx": Out(wire), "h2o_rx": In(wire), "o2h_tx": Out(wire), "o2h_rx": In(wire),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self.config, self.config.layout
        n_vfs, vf_bits = cfg.n_vfs, bits_for(cfg.n_vfs)
        max_chunk = max(cfg.chunk_words, lay.block_words, lay.meta_words)

        m.submodules.csr = csr = AxiLiteSlave(ADDR_BITS)
        wiring.connect(m, wiring.flipped(self.axil), csr.axil)
        bus = self._bus = csr.bus
        m.d.comb += bus.mapped.eq(regmap_mapped(bus.addr, n_vfs)
                                  | self._profiler_mapped(bus.addr))

        units, engines = {}, {}
        armed = Signal(init=1, name="fault_armed")   # only with _fault_inject
        for dev in Device:
            name = dev.label
            unit = VFUnit(lay, cfg.slots(dev), cfg.latency(dev), tag_bits=cfg.tag_bits + vf_bits)
            dma = DMA(lay, cfg.slots(dev), max_chunk_words=max_chunk)
            engine = MigEngine(cfg, dev)
            m.submodules[f"{name}_unit"], m.submodules[f"{name}_dma"] = unit, dma
            m.submodules[f"{name}_engine"] = engine
            units[dev], engines[dev] = unit, engine
            for port in ("sa_rd_en", "sa_rd_addr", "sa_wr_en", "sa_wr_addr"):
                m.d.comb += getattr(unit, port).eq(getattr(dma, port))
            m.d.comb += unit.sa_wr_data.eq(dma.sa_wr_data ^ self._injected(dma, armed))
            m.d.comb += dma.sa_rd_data.eq(unit.sa_rd_data)
            for port in ("rd_desc", "wr_data", "wr_desc"):
                wiring.connect(m, getattr(engine, port), getattr(dma, port))
            for port in ("rd_data", "rd_done", "wr_done"):
                wiring.connect(m, getattr(dma, port), getattr(engine, port))
            for port in ("irq_hold", "dirty_rd_en", "dirty_rd_slot", "dirty_rd_word",
                         "dirty_clear"):
                m.d.comb += getattr(unit, port).eq(getattr(engine, port))
            for port in ("dirty_rd_bits", "dirty_count", "digest"):
                m.d.comb += getattr(engine, port).eq(getattr(unit, port))
        host, offload = engines[Device.HOST], engines[Device.OFFLOAD]
        if self.fault_inject:
            with m.If(host.done.valid | offload.done.valid):
                m.d.sync += armed.eq(0)

        # Where each VF is served.  During the commit handshake both engines say `here`;
        # the source (the one with the VF `outgoing`) owns it until COMMIT_ACK.
        at_offload = Signal(n_vfs)
        m.d.comb += at_offload.eq(offload.here & (~host.here | offload.outgoing))

        # ---- router: VF id -> (device, slot); a held VF's requests wait in its queue
        m.submodules.router = router = Router.for_system(cfg, queue_depth=8)
        wiring.connect(m, wiring.flipped(self.req), router.req)
        wiring.connect(m, router.resp, wiring.flipped(self.resp))
        wiring.connect(m, router.dev_req[Device.HOST], units[Device.HOST].req)
        wiring.connect(m, units[Device.HOST].resp, router.dev_resp[Device.HOST])
        irqs, link_regs = self._link(m, units, engines, router)
        self._drain_gates(m, units, engines, router)

        # The engines own placement and holds; keep the router's table in step with them,
        # one command per cycle (lowest VF first): HOLD as a drain starts, RELEASE at the
        # VF's place when the hold ends (its new place after a commit, its old after an
        # abort).
        want_held = Signal(n_vfs)
        m.d.comb += want_held.eq(host.hold | offload.hold)
        slot_now = Array(Mux(at_offload[v], offload.slot_of[v], host.slot_of[v])
                         for v in range(n_vfs))
        ctl = router.ctl.payload
        for v in reversed(range(n_vfs)):
            moved = (router.vf_device[v] != at_offload[v]) | (router.vf_slot[v] != slot_now[v])
            with m.If(want_held[v] != router.held[v]):
                m.d.comb += [router.ctl.valid.eq(1), ctl.vf.eq(v),
                             ctl.op.eq(Mux(want_held[v], RouterOp.HOLD, RouterOp.RELEASE)),
                             ctl.device.eq(at_offload[v]), ctl.slot.eq(slot_now[v])]
            with m.Elif(~want_held[v] & moved):
                m.d.comb += [router.ctl.valid.eq(1), ctl.vf.eq(v), ctl.op.eq(RouterOp.PLACE),
                             ctl.device.eq(at_offload[v]), ctl.slot.eq(slot_now[v])]

        # ---- interrupts: both units -> remapper (source id attached) -> VMs
        remap_regs = self._interrupts(m, irqs, engines)

        # ---- per-VF statistics: downtime, last migration's rounds/words, counts
        def per_vf(name, width):
            return Array(Signal(width, name=f"{name}_{v}") for v in range(n_vfs))
        downtime, rounds, words = per_vf("downtime", 32), per_vf("rounds", 8), per_vf("words", 32)
        committed, aborted = per_vf("committed", 16), per_vf("aborted", 16)
        # Downtime: from the cycle the router holds the VF to the cycle its unit can serve
        # it again at its (new) place — after the hold, the target may still be replaying
        # the VF's pending interrupts.
        down = Signal(n_vfs)
        for v in range(n_vfs):
            now_held = want_held[v] | router.held[v]
            unit_idle = Mux(at_offload[v],
                            units[Device.OFFLOAD].idle.bit_select(offload.slot_of[v], 1),
                            units[Device.HOST].idle.bit_select(host.slot_of[v], 1))
            with m.If(now_held & ~down[v]):
                m.d.sync += [down[v].eq(1), downtime[v].eq(1)]
            with m.Elif(down[v]):
                with m.If(now_held | ~unit_idle):
                    m.d.sync += downtime[v].eq(downtime[v] + 1)
                with m.Else():
                    m.d.sync += down[v].eq(0)
        for engine in engines.values():
            done = engine.done
            m.d.comb += done.ready.eq(1)
            with m.If(done.valid):
                m.d.sync += [rounds[done.payload.vf].eq(done.payload.rounds),
                             words[done.payload.vf].eq(done.payload.words)]
                with m.If(done.payload.committed):
                    m.d.sync += committed[done.payload.vf].eq(committed[done.payload.vf] + 1)
                with m.Else():
                    m.d.sync += aborted[done.payload.vf].eq(aborted[done.payload.vf] + 1)

        # ---- register bus
        cycle = Signal(64)
        cycle_hi_latch = Signal(32)
        m.d.sync += cycle.eq(cycle + 1)
        addr = bus.addr
        vf_index = Signal(ADDR_BITS)
        m.d.comb += vf_index.eq((addr - VF_BASE) >> (VF_STRIDE.bit_length() - 1))
        is_vf = (addr >= VF_BASE) & (vf_index < n_vfs)
        reg = addr[:VF_STRIDE.bit_length() - 1]
        csr_vf = vf_index[:vf_bits]
        csr_at_offload = at_offload.bit_select(csr_vf, 1)
        for dev, engine in engines.items():
            # Control goes only to the engine that owns the VF: during the commit handshake
            # both engines have it, and a request must not act twice.
            owner = is_vf & (csr_at_offload if dev == Device.OFFLOAD else ~csr_at_offload)
            write = bus.we & owner
            m.d.comb += [
                engine.ctl_vf.eq(csr_vf), engine.rd_vf.eq(csr_vf),
                engine.ctl_state.eq(bus.wdata[:3]),
                engine.ctl_state_we.eq(write & (reg == VF["REQUESTED_STATE"])),
                engine.ctl_commit.eq(write & (reg == VF["CONTROL"])
                                     & bus.wdata[CONTROL_COMMIT]),
            ]
        # STATUS.error/reason per VF, here rather than in an engine, so that it follows the
        # VF from device to device (a refusal in the commit-handshake cycle is not lost).
        error, reason = per_vf("error", 4), per_vf("reason", 4)
        with m.If(bus.we & is_vf & (reg == VF["CONTROL"])
                  & bus.wdata[CONTROL_CLEAR_ERROR]):
            m.d.sync += [error[csr_vf].eq(0), reason[csr_vf].eq(0)]
        for engine in engines.values():
            for port in (engine.walk_status, engine.ctl_status):
                m.d.comb += port.ready.eq(1)
                with m.If(port.valid):
                    m.d.sync += [error[port.payload.vf].eq(port.payload.error),
                                 reason[port.payload.vf].eq(port.payload.reason)]
        rd = Signal.like(host.rd)
        with m.If(csr_at_offload):
            m.d.comb += rd.eq(offload.rd)
        with m.Else():
            m.d.comb += rd.eq(host.rd)  # the host answers for VFs in flight to nowhere

        rdata = Signal(32)
        with m.If(is_vf):
            with m.Switch(reg):
                with m.Case(VF["DEVICE_STATE"]):
                    m.d.comb += rdata.eq(rd.state)
                with m.Case(VF["REQUESTED_STATE"]):
                    m.d.comb += rdata.eq(rd.requested)
                with m.Case(VF["LOCATION"]):
                    m.d.comb += rdata.eq(at_offload.bit_select(csr_vf, 1) | (rd.slot << 8)
                                         | (rd.migrating << LOCATION_MIGRATING))
                with m.Case(VF["STATUS"]):
                    m.d.comb += rdata.eq(Cat(error[csr_vf], reason[csr_vf], rd.busy, rd.converged,
                                             rd.ready))
                with m.Case(VF["PRECOPY_INITIAL_BYTES"]):
                    m.d.comb += rdata.eq(rd.initial_bytes)
                with m.Case(VF["PRECOPY_DIRTY_BYTES"]):
                    m.d.comb += rdata.eq(rd.dirty_bytes)
                with m.Case(VF["DOWNTIME"]):
                    m.d.comb += rdata.eq(downtime[csr_vf])
                # Live while the VF's migration runs, else the last migration's figures.
                with m.Case(VF["ROUNDS"]):
                    m.d.comb += rdata.eq(Mux(rd.migrating, rd.rounds, rounds[csr_vf]))
                with m.Case(VF["WORDS_SENT"]):
                    m.d.comb += rdata.eq(Mux(rd.migrating, rd.words, words[csr_vf]))
                with m.Case(VF["MIGRATIONS"]):
                    m.d.comb += rdata.eq(Cat(committed[csr_vf], aborted[csr_vf]))
        with m.Else():
            with m.Switch(addr):
                with m.Case(GLOBAL["ID"]):
                    m.d.comb += rdata.eq(ID_VALUE)
                with m.Case(GLOBAL["CAPS"]):
                    m.d.comb += rdata.eq(int(cfg.flags) | n_vfs << 8 | cfg.host_slots << 16
                                         | cfg.offload_slots % 256 << 24)
                with m.Case(GLOBAL["CYCLE_LO"]):
                    m.d.comb += rdata.eq(cycle[:32])
                    with m.If(bus.re):
                        m.d.sync += cycle_hi_latch.eq(cycle[32:])
                with m.Case(GLOBAL["CYCLE_HI"]):
                    m.d.comb += rdata.eq(cycle_hi_latch)
                with m.Case(GLOBAL["IMAGE_WORDS"]):
                    m.d.comb += rdata.eq(lay.image_words)
                for name, value in (remap_regs | link_regs).items():
                    with m.Case(GLOBAL[name]):
                        m.d.comb += rdata.eq(value)
        regs_rdata = Signal(32)
        with m.If(bus.re):
            m.d.sync += regs_rdata.eq(rdata)

        # ---- profiler: counters of the VM-facing streams, its window behind the bus
        prof_sel = self._profiler(m, units, engines, at_offload, router)
        m.d.comb += bus.rdata.eq(Mux(prof_sel, self._prof.rd_data, regs_rdata))
        return m

    def _injected(self, dma, armed):
        """The bits ``_fault_inject`` flips in the state-port write of ``dma`` (0 without)."""
        if self.fault_inject != "corrupt_state_write":
            return 0
        offset = dma.sa_wr_addr[:self.config.layout.addr_bits]
        return Mux(armed & dma.sa_wr_en & (offset == 0), 1, 0)

    def _link(self, m, units, engines, router):
        """The link between the devices: a ``LinkPort`` per device on the wire ports, the
        engines on TC_MIG, the offload device's requests, responses and interrupts on TC_IO
        (hdl/io_tunnel.py). Returns the interrupt stream of each device as the host sees
        it, and the CSR read values of the link registers (model/regmap.py) by name."""
        cfg = self.config
        host_link = m.submodules.host_link = LinkPort(LINK_WIDTH)
        offload_link = m.submodules.offload_link = LinkPort(LINK_WIDTH)
        wiring.connect(m, host_link.tx, wiring.flipped(self.h2o_tx))
        wiring.connect(m, wiring.flipped(self.h2o_rx), offload_link.rx)
        wiring.connect(m, offload_link.tx, wiring.flipped(self.o2h_tx))
        wiring.connect(m, wiring.flipped(self.o2h_rx), host_link.rx)
        ports = self._link_ports = {Device.HOST: host_link, Device.OFFLOAD: offload_link}
        for dev, engine in engines.items():
            wiring.connect(m, engine.tx, ports[dev].mig_in)
            wiring.connect(m, ports[dev].mig_out, engine.rx)

        io_host = m.submodules.io_host = IoTunnelHost.for_system(cfg)
        io_offload = m.submodules.io_offload = IoTunnelDevice.for_system(cfg)
        off = units[Device.OFFLOAD]
        wiring.connect(m, router.dev_req[Device.OFFLOAD], io_host.req)
        wiring.connect(m, io_host.to_link, host_link.io_in)
        wiring.connect(m, host_link.io_out, io_host.from_link)
        wiring.connect(m, io_host.resp, router.dev_resp[Device.OFFLOAD])
        wiring.connect(m, offload_link.io_out, io_offload.from_link)
        wiring.connect(m, io_offload.req, off.req)
        wiring.connect(m, off.resp, io_offload.resp)
        wiring.connect(m, off.irq, io_offload.irq)
        wiring.connect(m, io_offload.to_link, offload_link.io_in)

        regs = {}
        for dev, port in ports.items():
            for stat in LINK_STAT_NAMES:
                regs[f"LINK_{dev.name}_{stat.upper()}"] = getattr(port.stats, stat)
            regs[f"MIG_MALFORMED_{dev.name}"] = engines[dev].malformed
        regs["IO_MALFORMED_HOST"] = io_host.malformed
        regs["IO_MALFORMED_OFFLOAD"] = io_offload.malformed
        return {Device.HOST: units[Device.HOST].irq, Device.OFFLOAD: io_host.irq}, regs

    def _drain_gates(self, m, units, engines, router):
        """A slot counts as drained for its engine only when the router has nothing in
        flight for its VF and holds it: requests to the offload device may still be inside
        the tunnel and the link while the unit is idle, and none may run at the source after
        its image was copied. For the same reason the unit takes such requests even when
        its engine quiesces the slot: they were dispatched before the hold, and a request
        that waited at a quiesced slot would stall the whole TC_IO stream."""
        for dev, engine in engines.items():
            unit = units[dev]
            for s in range(engine.n_slots):
                v = engine.slot_vf[s]
                pending = Signal(name=f"{dev.label}_in_flight_{s}")
                m.d.comb += pending.eq((router.in_flight[v] != 0) & router.placed.bit_select(v, 1)
                                       & (router.vf_device[v] == int(dev))
                                       & (router.vf_slot[v] == s))
                m.d.comb += [
                    unit.quiesce[s].eq(engine.quiesce[s] & ~pending),
                    engine.idle[s].eq(unit.idle[s] & ~pending & router.held.bit_select(v, 1)),
                ]

    def _interrupts(self, m, irqs, engines):
        """The interrupt path: each unit's MSI-X messages get their source id (device, slot)
        and the handle their address names, pass the remapper (hdl/irq_remap.py) and leave
        on ``irq`` as {vm, guest_vector, vf, vector}. Returns the CSR read values of the
        remapper registers (model/regmap.py) by register name.

        A migrating VF's entries follow its interrupts (DESIGN §3): when neither device has
        the VF interrupting (its P2P and stop states) the remapper HOLDs it, so a message
        still in flight from the source goes pending, validated against the old source;
        when a device starts interrupting it at a new place, the remapper RETARGETs the
        entries (after no message from the old slot is still offered) and RELEASEs the VF,
        replaying what went pending exactly once. Until the RETARGET, messages from the
        new place wait at the unit, so none is judged against the old source. An abort
        makes the source interrupt again at the same place: RELEASE without RETARGET.
        """
        cfg, n_vfs = self.config, self.config.n_vfs
        params = cfg.irq_remap
        m.submodules.irq_remap = remap = IrqRemap(params.n_vfs, params.n_vectors)
        host, offload = engines[Device.HOST], engines[Device.OFFLOAD]

        # Where each VF's entries expect their interrupts from (reset: host slot v).
        src_dev = Signal(n_vfs)
        src_slot = Array(Signal(8, name=f"irq_src_slot_{v}", init=v) for v in range(n_vfs))
        gated = []
        for dev, source in irqs.items():
            sender = engines[dev].slot_vf[source.payload.slot]
            allowed = ((src_dev.bit_select(sender, 1) == int(dev))
                       & (src_slot[sender] == source.payload.slot))
            gate = stream.Signature(source.payload.shape()).create(path=(f"{dev.label}_irq_g",))
            m.d.comb += [gate.valid.eq(source.valid & allowed), gate.payload.eq(source.payload),
                         source.ready.eq(gate.ready & allowed)]
            gated.append(gate)
        self._merge(m, "irq", gated, remap.irq_in,
                    lambda d, p: [self.irq_trace.raiser.eq(
                                      Mux(self.irq_trace.raised, engines[d].slot_vf[p.slot], 0)),
                                  remap.irq_in.payload.handle.eq(
                                      handle_from_msi_address(p.addr, params.handle_bits)),
                                  remap.irq_in.payload.data.eq(p.data),
                                  remap.irq_in.payload.source_device.eq(int(d)),
                                  remap.irq_in.payload.source_slot.eq(p.slot)])
        wiring.connect(m, remap.irq_out, wiring.flipped(self.irq))

        # ---- commands: a pending CSR command first, else the engines' VF moves (lowest
        # VF first, one per cycle).
        ctl = remap.ctl.payload
        csr_pending, csr_refused = Signal(), Signal()
        csr_op, csr_vf, csr_vector = Signal(3), Signal(params.vf_bits), Signal(params.vector_bits)
        staged = Signal(entry_layout(params))
        bus = self._bus
        addr, wdata = bus.addr, bus.wdata
        with m.If(bus.we & (addr == GLOBAL["IRTE_DATA"])):
            m.d.sync += staged.eq(wdata)
        with m.If(bus.we & (addr == GLOBAL["IRTE_CMD"]) & ~csr_pending):
            op = field(wdata, IRTE_CMD_OP)
            ok = ((op == RemapOp.WRITE) | (op == RemapOp.READ))
            m.d.sync += [csr_pending.eq(ok), csr_refused.eq(~ok), csr_op.eq(op),
                         csr_vf.eq(field(wdata, IRTE_CMD_VF)),
                         csr_vector.eq(field(wdata, IRTE_CMD_VECTOR))]
        with m.If(csr_pending):
            m.d.comb += [remap.ctl.valid.eq(1), ctl.op.eq(csr_op), ctl.vf.eq(csr_vf),
                         ctl.vector.eq(csr_vector), ctl.entry.eq(staged)]
            with m.If(remap.ctl.ready):
                m.d.sync += csr_pending.eq(0)
        with m.Else():
            for v in reversed(range(n_vfs)):
                live_off = offload.irq_live[v]
                live = host.irq_live[v] | live_off
                live_slot = Mux(live_off, offload.slot_of[v], host.slot_of[v])
                at_source = (src_dev[v] == live_off) & (src_slot[v] == live_slot)
                offered = Mux(src_dev[v], self._offers(irqs[Device.OFFLOAD], src_slot[v]),
                              self._offers(irqs[Device.HOST], src_slot[v]))
                held = remap.held[v]
                command = Signal(RemapOp, name=f"irq_cmd_{v}")
                want = Signal(name=f"irq_want_{v}")
                with m.If(~held & (~live | ~at_source)):
                    m.d.comb += [want.eq(1), command.eq(RemapOp.HOLD)]
                with m.Elif(held & live & ~at_source & ~offered):
                    m.d.comb += [want.eq(1), command.eq(RemapOp.RETARGET)]
                with m.Elif(held & live & at_source):
                    m.d.comb += [want.eq(1), command.eq(RemapOp.RELEASE)]
                with m.If(want):
                    m.d.comb += [remap.ctl.valid.eq(1), ctl.op.eq(command), ctl.vf.eq(v),
                                 ctl.entry.source_device.eq(live_off),
                                 ctl.entry.source_slot.eq(live_slot)]
                    with m.If(remap.ctl.ready & (command == RemapOp.RETARGET)):
                        m.d.sync += [src_dev[v].eq(live_off), src_slot[v].eq(live_slot)]

        # ---- trace for scoreboards: what the remapper accepted this cycle
        # (fields are zero in a cycle without the event: no X reaches a scoreboard)
        trace = self.irq_trace
        m.d.comb += [
            trace.raised.eq(remap.irq_in.valid & remap.irq_in.ready),
            trace.command.eq(remap.ctl.valid & remap.ctl.ready),
        ]
        with m.If(trace.raised):
            m.d.comb += [getattr(trace.raise_, name).eq(getattr(remap.irq_in.payload, name))
                         for name, _ in trace.raise_.shape()]
        with m.If(trace.command):
            m.d.comb += trace.ctl.eq(remap.ctl.payload)

        # ---- register read values
        fault = remap.fault.payload
        m.d.comb += remap.fault.ready.eq(bus.re & (addr == GLOBAL["IRQ_FAULT"]))
        fault_word = Signal(32)
        for name, (lsb, width) in IRQ_FAULT_FIELDS.items():
            value = remap.fault.valid if name == "valid" else getattr(fault, name)
            m.d.comb += fault_word[lsb:lsb + width].eq(value)
        return {
            "IRTE_CMD": Cat(csr_pending, csr_refused),
            "IRTE_DATA": remap.rd_entry.as_value() | (remap.rd_pending << IRTE_DATA_PENDING),
            "IRQ_FAULT": fault_word,
            "IRQ_RAISED": remap.raised_count, "IRQ_DELIVERED": remap.delivered_count,
            "IRQ_BLOCKED": remap.blocked_count, "IRQ_COALESCED": remap.coalesced_count,
            "IRQ_FAULTS_DROPPED": remap.fault_dropped,
        }

    def _profiler_mapped(self, addr):
        """The address is a register of the profiler window (a row, an index in it)."""
        n_vfs = self.config.n_vfs
        row = (addr - PROFILER_BASE) >> (PROFILER_ROW_STRIDE.bit_length() - 1)
        index = addr[2:PROFILER_ROW_STRIDE.bit_length() - 1]
        n_vf_regs, n_dev_regs = len(PROFILER_VF_REGS), len(PROFILER_DEVICE_REGS)
        return ((addr >= PROFILER_BASE) & (addr[:2] == 0)
                & (((row < n_vfs) & (index < n_vf_regs))
                   | ((row == n_vfs) & (index < n_dev_regs))))

    def _profiler(self, m, units, engines, at_offload, router):
        """The workload profiler (hdl/profiler.py) on the VM-facing streams; returns the
        registered "this read is the profiler's" select for the bus read data."""
        cfg, bus = self.config, self._bus
        n_vfs = cfg.n_vfs
        m.submodules.profiler = prof = self._prof = Profiler(n_vfs, tag_bits=cfg.tag_bits)
        host, offload = engines[Device.HOST], engines[Device.OFFLOAD]
        req, resp = self.req, self.resp
        # Requests to VF ids the system does not have are answered by the router: not counted.
        m.d.comb += [
            prof.req_seen.valid.eq(req.valid & req.ready & (req.payload.vf < n_vfs)),
            prof.req_seen.vf.eq(req.payload.vf), prof.req_seen.tag.eq(req.payload.tag),
            prof.req_seen.words.eq(1),              # every VM request carries one word
            prof.resp_seen.valid.eq(resp.valid & resp.ready & (resp.payload.vf < n_vfs)),
            prof.resp_seen.vf.eq(resp.payload.vf), prof.resp_seen.tag.eq(resp.payload.tag),
            prof.busy.eq(Cat(~units[Device.HOST].idle.all(), ~units[Device.OFFLOAD].idle.all())),
            # link utilisation: words each direction's wire carries (any flit, DLLPs too)
            *(prof.link_words[int(d)].eq(Mux(self._link_ports[d].tx.valid, LINK_WIDTH // 32, 0))
              for d in Device),
            prof.vf_device.eq(at_offload),
            prof.slots_used[0].eq(sum(host.here[v] & ~at_offload[v] for v in range(n_vfs))),
            prof.slots_used[1].eq(sum(offload.here[v] & at_offload[v] for v in range(n_vfs))),
            prof.snapshot.eq(bus.we & (bus.addr == GLOBAL["PROFILER_SNAPSHOT"])),
        ]
        addr = bus.addr
        in_window = addr >= PROFILER_BASE
        m.d.comb += [
            prof.rd_vf.eq((addr - PROFILER_BASE) >> (PROFILER_ROW_STRIDE.bit_length() - 1)),
            prof.rd_index.eq(addr[2:PROFILER_ROW_STRIDE.bit_length() - 1]),
            prof.rd_en.eq(bus.re & in_window),
        ]
        prof_sel = Signal()
        with m.If(bus.re):
            m.d.sync += prof_sel.eq(in_window)
        return prof_sel

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
