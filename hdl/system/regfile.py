"""The control-plane register file, generated from the register map in model/regmap.py."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from model.config import SystemConfig
from model.regmap import (
    ADDR_BITS,
    GLOBAL_REGS,
    ID_VALUE,
    PROFILER_BASE,
    PROFILER_ROW_STRIDE,
    VF_BASE,
    VF_REGS,
    VF_STRIDE,
)

from ..csr import reg_bus_signature, regmap_mapped
from ..formats import bits_for
from ..profiler import PROFILER_DEVICE_REGS, vf_register_names

#: Global registers this block answers itself (identification, the cycle counter).
OWN_REGS = ("ID", "CAPS", "CYCLE_LO", "CYCLE_HI", "IMAGE_WORDS")
_ROW_SHIFT = PROFILER_ROW_STRIDE.bit_length() - 1
_VF_SHIFT = VF_STRIDE.bit_length() - 1


def readable(regs) -> list[str]:
    return [r.name for r in regs if r.access != "WO"]


def writable(regs) -> list[str]:
    return [r.name for r in regs if r.access != "RO"]


def profiler_mapped(addr, config: SystemConfig):
    """The address is a register of the profiler window (a row, an index in it)."""
    n_vfs = config.n_vfs
    row = (addr - PROFILER_BASE) >> _ROW_SHIFT
    index = addr[2:_ROW_SHIFT]
    n_vf_regs = len(vf_register_names(config.profiler_bins))
    n_dev_regs = len(PROFILER_DEVICE_REGS)
    return ((addr >= PROFILER_BASE) & (addr[:2] == 0)
            & (((row < n_vfs) & (index < n_vf_regs)) | ((row == n_vfs) & (index < n_dev_regs))))


class RegisterFile(wiring.Component):
    """Decode the register bus against ``model.regmap``: one port per register.

    The members are generated from ``GLOBAL_REGS`` and ``VF_REGS``, lower-cased: a
    readable global register ``NAME`` (other than the ``OWN_REGS`` answered here) reads
    ``g_name``; a readable per-VF register reads ``vf_name``, the value for the VF the
    address names (``vf``).  A write pulses ``w_name`` (global) or ``vf_w_name`` (per VF,
    with ``vf``) with the data on ``wdata``; a read of a global pulses ``rd_name`` (for
    read side effects).  The profiler window (``PROFILER_BASE``) is read through
    ``prof_rd_*`` / ``prof_rd_data``.

    Members
    -------
    bus : In(reg_bus_signature(ADDR_BITS))   from the AXI4-Lite slave (hdl/csr.py); this
        block answers ``mapped`` and ``rdata``
    vf : Out(vf_bits); is_vf : Out(1); wdata : Out(32)   the decoded access
    g_*, vf_* : In(32); w_*, vf_w_*, rd_* : Out(1)   see above
    prof_rd_en : Out(1); prof_rd_vf, prof_rd_index : Out(ADDR_BITS); prof_rd_data : In(32)

    Latency: read data is registered (``rdata`` the cycle after ``re``), as the slave
    expects; write strobes are combinational.
    """

    def __init__(self, config: SystemConfig):
        if not isinstance(config, SystemConfig):
            raise TypeError(f"RegisterFile config must be a SystemConfig, not {config!r}")
        self.config = config
        ports = {"bus": In(reg_bus_signature(ADDR_BITS)),
                 "vf": Out(bits_for(config.n_vfs)), "is_vf": Out(1), "wdata": Out(32),
                 "prof_rd_en": Out(1), "prof_rd_vf": Out(ADDR_BITS),
                 "prof_rd_index": Out(ADDR_BITS), "prof_rd_data": In(32)}
        for name in readable(GLOBAL_REGS):
            if name not in OWN_REGS:
                ports[f"g_{name.lower()}"] = In(32)
            ports[f"rd_{name.lower()}"] = Out(1)
        ports |= {f"w_{name.lower()}": Out(1) for name in writable(GLOBAL_REGS)}
        ports |= {f"vf_{name.lower()}": In(32) for name in readable(VF_REGS)}
        ports |= {f"vf_w_{name.lower()}": Out(1) for name in writable(VF_REGS)}
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg, bus = self.config, self.bus
        n_vfs, addr = cfg.n_vfs, bus.addr
        m.d.comb += bus.mapped.eq(regmap_mapped(addr, n_vfs) | profiler_mapped(addr, cfg))

        vf_index = Signal(ADDR_BITS)
        m.d.comb += vf_index.eq((addr - VF_BASE) >> _VF_SHIFT)
        is_vf = (addr >= VF_BASE) & (vf_index < n_vfs)
        reg = addr[:_VF_SHIFT]
        m.d.comb += [self.vf.eq(vf_index), self.is_vf.eq(is_vf), self.wdata.eq(bus.wdata)]
        for r in GLOBAL_REGS:
            if r.access != "RO":
                m.d.comb += getattr(self, f"w_{r.name.lower()}").eq(bus.we & (addr == r.offset))
        for r in VF_REGS:
            if r.access != "RO":
                m.d.comb += getattr(self, f"vf_w_{r.name.lower()}").eq(
                    bus.we & is_vf & (reg == r.offset))

        cycle = Signal(64)
        cycle_hi_latch = Signal(32)
        m.d.sync += cycle.eq(cycle + 1)
        own = {"ID": ID_VALUE, "CYCLE_LO": cycle[:32], "CYCLE_HI": cycle_hi_latch,
               "CAPS": int(cfg.flags) | n_vfs << 8 | cfg.host_slots << 16
               | cfg.offload_slots % 256 << 24,
               "IMAGE_WORDS": cfg.layout.image_words}
        with m.If(self.rd_cycle_lo):
            m.d.sync += cycle_hi_latch.eq(cycle[32:])

        rdata = Signal(32)
        with m.If(is_vf):
            with m.Switch(reg):
                for r in VF_REGS:
                    if r.access != "WO":
                        with m.Case(r.offset):
                            m.d.comb += rdata.eq(getattr(self, f"vf_{r.name.lower()}"))
        with m.Else():
            with m.Switch(addr):
                for r in GLOBAL_REGS:
                    if r.access != "WO":
                        with m.Case(r.offset):
                            value = own.get(r.name, None)
                            if value is None:
                                value = getattr(self, f"g_{r.name.lower()}")
                            m.d.comb += [rdata.eq(value),
                                         getattr(self, f"rd_{r.name.lower()}").eq(bus.re)]
        regs_rdata = Signal(32)
        with m.If(bus.re):
            m.d.sync += regs_rdata.eq(rdata)

        # The profiler window: its own registered read data, selected for the read after.
        in_window = addr >= PROFILER_BASE
        m.d.comb += [
            self.prof_rd_vf.eq((addr - PROFILER_BASE) >> _ROW_SHIFT),
            self.prof_rd_index.eq(addr[2:_ROW_SHIFT]),
            self.prof_rd_en.eq(bus.re & in_window),
        ]
        prof_sel = Signal()
        with m.If(bus.re):
            m.d.sync += prof_sel.eq(in_window)
        m.d.comb += bus.rdata.eq(Mux(prof_sel, self.prof_rd_data, regs_rdata))
        return m
