"""The control-plane AXI4-Lite slave (docs/design.md `csr`) and the register-map address decoder.

``AxiLiteSlave`` turns AXI4-Lite transactions into accesses of the simple register bus that
the register file (today the decode in ``hdl/system.py``) implements: one access per cycle,
``we``/``re`` strobes, read data the cycle after ``re``, and a combinational ``mapped`` answer
for the address on the bus.  ``regmap_mapped`` builds that answer from ``model/regmap.py``.

Response codes follow the AXI convention (IHI 0022, A3.4.4): DECERR when no register lives
at the word addressed (the decode error an interconnect would give), SLVERR when there is a
register but the access is one it cannot take: a misaligned address (``addr[1:0] != 0``) or
a write strobe other than ``0b1111`` (the registers are 32-bit only; a partial write would
silently change bytes the writer did not name).  DECERR wins over SLVERR.  An access in error
never reaches the bus: no ``we``/``re`` strobe, so neither a write nor a read side effect
(reading CYCLE_LO latches CYCLE_HI) happens; a failed read returns zero data.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from model.common import check_fault_inject
from model.regmap import ADDR_BITS, GLOBAL_REGS, VF_BASE, VF_REGS, VF_STRIDE

__all__ = ["AxiLiteSlave", "AxiResp", "axil_signature", "reg_bus_signature", "regmap_mapped"]

DATA_BITS = 32
FULL_STROBE = 0b1111
#: Deliberate bugs, for the negative formal test only: "strobe_on_error" strobes ``we``
#: for a write in error (the error rule the formal harness checks).
FAULT_INJECTIONS = ("strobe_on_error",)


class AxiResp:
    """BRESP/RRESP codes (AXI4-Lite has no EXOKAY)."""
    OKAY = 0b00
    SLVERR = 0b10
    DECERR = 0b11


def _check_addr_bits(addr_bits) -> None:
    if not isinstance(addr_bits, int) or isinstance(addr_bits, bool):
        raise TypeError(f"addr_bits must be an int, not {addr_bits!r}")
    if not 3 <= addr_bits <= 32:
        raise ValueError(f"addr_bits must be between 3 and 32, not {addr_bits}")


def axil_signature(addr_bits: int = ADDR_BITS) -> wiring.Signature:
    """An AXI4-Lite port with 32-bit data, seen from the master (a slave takes it ``In``).

    Member names are the AXI signal names in lower case, so a port ``axil`` flattens to
    ``axil__awvalid``, ``axil__rdata`` and so on."""
    _check_addr_bits(addr_bits)
    return wiring.Signature({
        "awvalid": Out(1), "awready": In(1), "awaddr": Out(addr_bits), "awprot": Out(3),
        "wvalid": Out(1), "wready": In(1), "wdata": Out(DATA_BITS), "wstrb": Out(DATA_BITS // 8),
        "bvalid": In(1), "bready": Out(1), "bresp": In(2),
        "arvalid": Out(1), "arready": In(1), "araddr": Out(addr_bits), "arprot": Out(3),
        "rvalid": In(1), "rready": Out(1), "rdata": In(DATA_BITS), "rresp": In(2),
    })


def reg_bus_signature(addr_bits: int = ADDR_BITS) -> wiring.Signature:
    """The simple register bus, seen from the bus master (the AXI4-Lite slave).

    ``addr`` is a word-aligned byte address; ``we`` writes ``wdata`` at the clock edge;
    ``re`` asks for ``rdata`` the next cycle (the register file may have a read side effect);
    ``mapped`` is the register file's combinational answer "a register lives at ``addr``"."""
    _check_addr_bits(addr_bits)
    return wiring.Signature({
        "addr": Out(addr_bits), "wdata": Out(DATA_BITS), "we": Out(1), "re": Out(1),
        "rdata": In(DATA_BITS), "mapped": In(1),
    })


def regmap_mapped(addr: Value, n_vfs: int) -> Value:
    """1 when byte address ``addr`` is a register of model/regmap.py for ``n_vfs`` VFs.

    Global registers, and each ``VF_REGS`` offset of the blocks at ``VF_BASE + vf *
    VF_STRIDE`` for ``vf < n_vfs``.  Only the exact (word-aligned) register address matches.
    Combinational: a range check for the VF blocks plus one comparator per register, as
    the offset in a block is the low bits of the address (``VF_STRIDE`` is a power of two)."""
    if not isinstance(n_vfs, int) or isinstance(n_vfs, bool):
        raise TypeError(f"n_vfs must be an int, not {n_vfs!r}")
    if n_vfs < 1:
        raise ValueError(f"n_vfs must be at least 1, not {n_vfs}")
    if VF_STRIDE & (VF_STRIDE - 1) or VF_BASE % VF_STRIDE:
        raise ValueError(f"VF_STRIDE {VF_STRIDE:#x} must be a power of two dividing VF_BASE "
                         f"{VF_BASE:#x}")
    addr = Value.cast(addr)
    end = VF_BASE + n_vfs * VF_STRIDE
    if end > 1 << len(addr):
        raise ValueError(f"{n_vfs} VFs need registers up to {end - 1:#x}, beyond the "
                         f"{len(addr)}-bit address")
    offset_bits = VF_STRIDE.bit_length() - 1
    offset = addr[:offset_bits]
    is_global = Const(0)
    for reg in GLOBAL_REGS:
        is_global = is_global | (addr == reg.offset)
    is_vf_reg = Const(0)
    for reg in VF_REGS:
        is_vf_reg = is_vf_reg | (offset == reg.offset)
    in_vf_blocks = (addr >= VF_BASE) & (addr < end)
    return is_global | (in_vf_blocks & is_vf_reg)


class AxiLiteSlave(wiring.Component):
    """AXI4-Lite slave in front of the simple register bus (32-bit registers only).

    Parameters
    ----------
    addr_bits : int
        byte-address width of both ports (default ``model.regmap.ADDR_BITS``).

    Members
    -------
    axil : In(axil_signature(addr_bits))
        AXI4-Lite slave port.  AW and W are each taken into a one-entry holding register
        (``awready``/``wready`` high while it is empty), in either order or in the same
        cycle; the write runs once both are held and no B response is waiting.  AR has the
        same one-entry register.  So per direction one access waits for its response while
        the next one may already be held; AWPROT/ARPROT are accepted and ignored.
    bus : Out(reg_bus_signature(addr_bits))
        the register bus: ``addr`` (the transaction's address with bits [1:0] cleared),
        ``wdata``, ``we``, ``re`` out; ``rdata`` (the cycle after ``re``), ``mapped`` in.

    Latency: a write's B is valid 2 cycles after the later of its AW/W handshakes (the
    ``we`` cycle is the one in between); a read's R is valid 3 cycles after its AR
    handshake (``re``, then the bus's read data is captured).  Back to back, with
    ``bready``/``rready`` held high: a write every 2 cycles, a read every 3.

    Backpressure: a B or R not taken keeps its direction's next access off the bus
    (``bvalid``/``rvalid`` and the response stay stable until the handshake); AW, W and AR
    are then still accepted into their holding registers and wait.

    Arbitration: one bus access per cycle.  When a read and a write are both ready in the
    same cycle, the direction that did not go last goes first (round robin), so a stream
    of polls cannot starve a write and vice versa.
    """

    def __init__(self, addr_bits: int = ADDR_BITS, *, _fault_inject: str | None = None):
        _check_addr_bits(addr_bits)
        self.addr_bits = addr_bits
        self._fault_inject = check_fault_inject("AxiLiteSlave", _fault_inject, FAULT_INJECTIONS)
        # The AW/W/AR holding registers, created here so the formal harness (formal/csr.py)
        # can state what they hold: its k-induction needs that invariant.
        self._aw_addr = Signal(addr_bits)
        self._w_data = Signal(DATA_BITS)
        self._w_strb = Signal(DATA_BITS // 8)
        self._ar_addr = Signal(addr_bits)
        # The round-robin bit and the read's capture stage, for the same reason: they bound
        # how long a held access waits, which the harness's k-induction must state.
        self._last_was_read = Signal()
        self._r_capture = Signal()
        super().__init__({
            "axil": In(axil_signature(addr_bits)),
            "bus": Out(reg_bus_signature(addr_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        axil, bus = self.axil, self.bus

        # ---- holding registers: one address/data per direction
        aw_full, w_full, ar_full = Signal(), Signal(), Signal()
        aw_addr, w_data, w_strb, ar_addr = self._aw_addr, self._w_data, self._w_strb, self._ar_addr
        m.d.comb += [axil.awready.eq(~aw_full), axil.wready.eq(~w_full),
                     axil.arready.eq(~ar_full)]
        with m.If(axil.awvalid & axil.awready):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(axil.awaddr)]
        with m.If(axil.wvalid & axil.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(axil.wdata), w_strb.eq(axil.wstrb)]
        with m.If(axil.arvalid & axil.arready):
            m.d.sync += [ar_full.eq(1), ar_addr.eq(axil.araddr)]

        # ---- responses, held until their handshake
        bvalid = Signal()
        bresp = Signal(2)
        rvalid = Signal()
        rresp = Signal(2)
        rdata = Signal(DATA_BITS)
        r_capture = self._r_capture   # the cycle after re: the bus's read data is valid
        m.d.comb += [axil.bvalid.eq(bvalid), axil.bresp.eq(bresp),
                     axil.rvalid.eq(rvalid), axil.rresp.eq(rresp), axil.rdata.eq(rdata)]
        with m.If(axil.bvalid & axil.bready):
            m.d.sync += bvalid.eq(0)
        with m.If(axil.rvalid & axil.rready):
            m.d.sync += rvalid.eq(0)

        # ---- arbitration: one access per cycle, round robin when both are ready
        write_ready = aw_full & w_full & ~bvalid
        read_ready = ar_full & ~rvalid & ~r_capture
        last_was_read = self._last_was_read
        do_read = Signal()
        do_write = Signal()
        m.d.comb += [do_read.eq(read_ready & (~write_ready | ~last_was_read)),
                     do_write.eq(write_ready & ~do_read)]
        with m.If(do_read):
            m.d.sync += last_was_read.eq(1)
        with m.Elif(do_write):
            m.d.sync += last_was_read.eq(0)

        # ---- the bus access and its response code
        addr = Mux(do_read, ar_addr, aw_addr)
        misaligned = addr[:2] != 0
        m.d.comb += [bus.addr.eq(addr[2:] << 2), bus.wdata.eq(w_data)]
        resp = Signal(2)
        with m.If(~bus.mapped):
            m.d.comb += resp.eq(AxiResp.DECERR)
        with m.Elif(misaligned | (do_write & (w_strb != FULL_STROBE))):
            m.d.comb += resp.eq(AxiResp.SLVERR)
        with m.Else():
            m.d.comb += resp.eq(AxiResp.OKAY)
        ok = ~resp.any()   # OKAY is 0
        write_ok = Const(1) if self._fault_inject == "strobe_on_error" else ok
        m.d.comb += [bus.we.eq(do_write & write_ok), bus.re.eq(do_read & ok)]

        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1), bresp.eq(resp)]
        read_ok = Signal()
        with m.If(do_read):
            m.d.sync += [ar_full.eq(0), r_capture.eq(1), rresp.eq(resp), read_ok.eq(ok)]
        with m.If(r_capture):
            m.d.sync += [r_capture.eq(0), rvalid.eq(1), rdata.eq(Mux(read_ok, bus.rdata, 0))]
        return m
