"""The vfmig system top, wiring only: host and offload VF units, their DMAs and migration
engines, the link, the router, placement, the interrupt path, statistics, registers."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from model.common import check_fault_inject
from model.config import Device, SystemConfig
from model.regmap import (
    ADDR_BITS,
    CONTROL_CLEAR_ERROR,
    CONTROL_COMMIT,
    LINK_STAT_NAMES,
    LOCATION_MIGRATING,
    DowntimePhase,
)

from ..csr import AxiLiteSlave, axil_signature
from ..dma import DMA
from ..formats import bits_for, system_irq_layout, system_request_layout, system_response_layout
from ..io_tunnel import IoTunnelDevice, IoTunnelHost
from ..link import LinkPort, wire_signature
from ..mig_engine import MigEngine
from ..profiler import Profiler
from ..register_slice import RegisterSlice
from ..router import Router
from ..vf_unit import VFUnit
from .interrupts import IRQ_REGS, InterruptPath, irq_trace_layout
from .placement import Placement
from .regfile import RegisterFile
from .stats import VfStats

FAULTS = ("corrupt_state_write",)    # deliberate design faults, for the tests that catch them


class System(wiring.Component):
    """Two devices that move VFs between each other at runtime (docs/design.md).

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
    h2o_tx : Out(wire_signature(config.link_width)); h2o_rx : In(...)
        the host -> offload wire: what the host port sends, what the offload port receives
    o2h_tx : Out(...); o2h_rx : In(...)
        the offload -> host wire. A testbench copies each ``*_tx`` to its ``*_rx`` (with
        faults, or with none), the receiving port registers it on entry.

    Latency: a request to a VF on the host reaches its unit a cycle after the router
    dispatches it (a register slice); one to a VF on the offload device crosses the link
    twice (TC_IO, store and forward: about 30 cycles on an idle link on top of the unit's
    service latency); the router's in-flight limit and queues give the backpressure, as for
    the host.
    """

    def __init__(self, config: SystemConfig | None = None, _fault_inject: str | None = None):
        self.config = config = config or SystemConfig()
        if not isinstance(config, SystemConfig):
            raise TypeError(f"System config must be a SystemConfig, not {config!r}")
        self.fault_inject = check_fault_inject("System", _fault_inject, FAULTS)
        wire = wire_signature(config.link_width)
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
        cfg = self.config
        m.submodules.csr = csr = AxiLiteSlave(ADDR_BITS)
        wiring.connect(m, wiring.flipped(self.axil), csr.axil)
        m.submodules.regs = regs = RegisterFile(cfg)
        wiring.connect(m, csr.bus, regs.bus)

        units, engines = self._devices(m)
        offload = engines[Device.OFFLOAD]

        # ---- router: VF id -> (device, slot); a held VF's requests wait in its queue
        m.submodules.router = router = Router.for_system(cfg)
        wiring.connect(m, wiring.flipped(self.req), router.req)
        wiring.connect(m, router.resp, wiring.flipped(self.resp))
        # a register slice between the router's dispatch and the unit's acceptance: the two
        # in one combinational handshake were the 8-VF board's critical path
        m.submodules.host_req_slice = host_slice = RegisterSlice(router.dev_req[Device.HOST]
                                                                 .payload.shape())
        wiring.connect(m, router.dev_req[Device.HOST], host_slice.i)
        wiring.connect(m, host_slice.o, units[Device.HOST].req)
        wiring.connect(m, units[Device.HOST].resp, router.dev_resp[Device.HOST])
        irqs, link_regs = self._link(m, units, engines, router)
        self._drain_gates(m, units, engines, router)

        # ---- placement: the one view of where each VF lives; it drives the router
        m.submodules.placement = place = Placement(
            cfg, router.ctl.payload.shape(), len(router.vf_device[0]), len(router.vf_slot[0]))
        for dev, engine in engines.items():
            for port in ("here", "hold", "irq_live"):
                m.d.comb += getattr(place, f"{dev.label}_{port}").eq(getattr(engine, port))
            m.d.comb += getattr(place, f"{dev.label}_slot").eq(engine.slot_of)
        m.d.comb += [place.offload_outgoing.eq(offload.outgoing),
                     place.router_held.eq(router.held), place.router_device.eq(router.vf_device),
                     place.router_slot.eq(router.vf_slot)]
        wiring.connect(m, place.router_ctl, router.ctl)

        # ---- interrupts: both units -> remapper (source id attached) -> VMs
        m.submodules.interrupts = intr = InterruptPath(
            cfg, {dev: irq.payload.shape() for dev, irq in irqs.items()})
        for dev, irq in irqs.items():
            wiring.connect(m, irq, getattr(intr, f"{dev.label}_irq"))
        m.d.comb += [intr.irq_live.eq(place.irq_live), intr.irq_device.eq(place.irq_device),
                     intr.irq_slot.eq(place.irq_slot), intr.wdata.eq(regs.wdata),
                     intr.w_irte_cmd.eq(regs.w_irte_cmd), intr.w_irte_data.eq(regs.w_irte_data),
                     intr.rd_irq_fault.eq(regs.rd_irq_fault), self.irq_trace.eq(intr.irq_trace)]
        wiring.connect(m, intr.irq, wiring.flipped(self.irq))

        # ---- per-VF status and statistics
        m.submodules.stats = stats = VfStats(cfg)
        for dev, engine in engines.items():
            for port, status in zip(getattr(stats, f"{dev.label}_status"),
                                    (engine.walk_status, engine.ctl_status), strict=True):
                wiring.connect(m, status, port)
            wiring.connect(m, engine.done, getattr(stats, f"{dev.label}_done"))
            m.d.comb += [getattr(stats, f"{dev.label}_slot").eq(engine.slot_of),
                         getattr(stats, f"{dev.label}_resuming").eq(units[dev].resuming),
                         getattr(stats, f"{dev.label}_phase").eq(engine.phase),
                         getattr(stats, f"{dev.label}_phase_vf").eq(engine.phase_vf)]
        m.d.comb += [stats.want_held.eq(place.want_held), stats.router_held.eq(router.held),
                     stats.at_offload.eq(place.at_offload), stats.clear_vf.eq(regs.vf),
                     stats.clear.eq(regs.vf_w_control & regs.wdata[CONTROL_CLEAR_ERROR])]

        # ---- registers
        self._engine_control(m, regs, engines, place.at_offload)
        self._vf_registers(m, regs, engines, place.at_offload, stats)
        for name, value in (self._intr_regs(intr) | link_regs).items():
            m.d.comb += getattr(regs, f"g_{name.lower()}").eq(value)
        self._profiler(m, units, engines, place.at_offload, regs)
        return m

    def _devices(self, m):
        """Per device: the VF unit, its DMA and its migration engine, wired together."""
        cfg, lay = self.config, self.config.layout
        vf_bits = bits_for(cfg.n_vfs)
        max_chunk = max(cfg.chunk_words, lay.block_words, lay.meta_words)
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
        if self.fault_inject:
            with m.If(engines[Device.HOST].done.valid | engines[Device.OFFLOAD].done.valid):
                m.d.sync += armed.eq(0)
        return units, engines

    @staticmethod
    def _engine_control(m, regs, engines, at_offload):
        """Control goes only to the engine that owns the addressed VF: during the commit
        handshake both engines have it, and a request must not act twice."""
        csr_at_offload = at_offload.bit_select(regs.vf, 1)
        for dev, engine in engines.items():
            owner = csr_at_offload if dev == Device.OFFLOAD else ~csr_at_offload
            m.d.comb += [
                engine.ctl_vf.eq(regs.vf), engine.rd_vf.eq(regs.vf),
                engine.ctl_state.eq(regs.wdata[:3]),
                engine.ctl_state_we.eq(regs.vf_w_requested_state & owner),
                engine.ctl_commit.eq(regs.vf_w_control & owner & regs.wdata[CONTROL_COMMIT]),
            ]

    @staticmethod
    def _vf_registers(m, regs, engines, at_offload, stats):
        """The per-VF register values of the addressed VF: the owning engine's readback
        (the host answers for VFs in flight to nowhere) and the statistics."""
        host, offload = engines[Device.HOST], engines[Device.OFFLOAD]
        vf = regs.vf
        csr_at_offload = at_offload.bit_select(vf, 1)
        rd = Signal.like(host.rd)
        with m.If(csr_at_offload):
            m.d.comb += rd.eq(offload.rd)
        with m.Else():
            m.d.comb += rd.eq(host.rd)
        m.d.comb += [
            regs.vf_device_state.eq(rd.state), regs.vf_requested_state.eq(rd.requested),
            regs.vf_location.eq(csr_at_offload | (rd.slot << 8)
                                | (rd.migrating << LOCATION_MIGRATING)),
            regs.vf_status.eq(Cat(stats.error[vf], stats.reason[vf], rd.busy, rd.converged,
                                  rd.ready)),
            regs.vf_precopy_initial_bytes.eq(rd.initial_bytes),
            regs.vf_precopy_dirty_bytes.eq(rd.dirty_bytes),
            regs.vf_downtime.eq(stats.downtime[vf]),
            # Live while the VF's migration runs, else the last migration's figures.
            regs.vf_rounds.eq(Mux(rd.migrating, rd.rounds, stats.rounds[vf])),
            regs.vf_words_sent.eq(Mux(rd.migrating, rd.words, stats.words[vf])),
            regs.vf_migrations.eq(Cat(stats.committed[vf], stats.aborted[vf])),
        ]
        for phase in DowntimePhase:
            m.d.comb += getattr(regs, f"vf_downtime_{phase.name.lower()}").eq(
                stats.phases[vf][phase])

    @staticmethod
    def _intr_regs(intr):
        return {name: getattr(intr, name.lower()) for name in IRQ_REGS}

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
        host_link = m.submodules.host_link = LinkPort.for_system(cfg)
        offload_link = m.submodules.offload_link = LinkPort.for_system(cfg)
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

    def _profiler(self, m, units, engines, at_offload, regs):
        """The workload profiler (hdl/profiler.py) on the VM-facing streams, read through
        the register file's profiler window."""
        cfg = self.config
        n_vfs = cfg.n_vfs
        m.submodules.profiler = prof = Profiler.for_system(cfg)
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
            *(prof.link_words[int(d)].eq(Mux(self._link_ports[d].tx.valid,
                                             cfg.link.words_per_flit, 0))
              for d in Device),
            prof.vf_device.eq(at_offload),
            prof.slots_used[0].eq(sum(host.here[v] & ~at_offload[v] for v in range(n_vfs))),
            prof.slots_used[1].eq(sum(offload.here[v] & at_offload[v] for v in range(n_vfs))),
            prof.snapshot.eq(regs.w_profiler_snapshot),
        ]
        m.d.comb += [prof.rd_vf.eq(regs.prof_rd_vf), prof.rd_index.eq(regs.prof_rd_index),
                     prof.rd_en.eq(regs.prof_rd_en), regs.prof_rd_data.eq(prof.rd_data)]
