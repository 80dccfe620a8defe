"""Formal harness of the AXI4-Lite slave (``hdl/csr.py``).

The master is free but follows AXI4-Lite (assumed): a VALID stays up until its READY and
its payload is stable meanwhile. The register file's ``mapped`` answer is model/regmap.py's
(``regmap_mapped``, ``N_VFS`` VFs) and its ``rdata`` is free. Asserted:

* the slave's side of the handshake: ``bvalid``/``rvalid`` held until ``bready``/``rready``,
  ``bresp``/``rresp``/``rdata`` stable while waiting;
* exactly one response per AW+W pair and per AR: never a B (R) without an unanswered pair
  (AR), at most two pairs (ARs) unanswered (one waiting for its response, one held), the
  ``*ready`` outputs saying whether the holding register is free, and a pending access
  answered within ``MAX_WAIT`` cycles while the master takes responses;
* the error rules: a response's code is DECERR when no register lives at its word, else
  SLVERR when misaligned or (write) the strobe is not 0b1111, else OKAY; a failed read
  returns 0, a good one the bus's data; the bus is strobed (``we``/``re``) only for a good
  access, at that access's word, with its data.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.csr import FULL_STROBE, AxiLiteSlave, AxiResp, regmap_mapped

from .core import FormalBlock

__all__ = ["BLOCK", "CsrHarness"]

N_VFS = 2
ADDR_BITS = 12
MAX_WAIT = 4
FAULTS = ("strobe_on_error",)


def _expected(addr, mapped, bad_strobe):
    return Mux(~mapped, AxiResp.DECERR,
               Mux((addr[:2] != 0) | bad_strobe, AxiResp.SLVERR, AxiResp.OKAY))


class CsrHarness(wiring.Component):
    """The slave with a constrained master; ports: every master signal and ``bus.rdata``."""

    def __init__(self, fault: str | None = None):
        self.dut = AxiLiteSlave(ADDR_BITS, _fault_inject=fault)
        super().__init__({
            "awvalid": In(1), "awaddr": In(ADDR_BITS), "wvalid": In(1), "wdata": In(32),
            "wstrb": In(4), "bready": In(1), "arvalid": In(1), "araddr": In(ADDR_BITS),
            "rready": In(1), "rdata": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        ax, bus = dut.axil, dut.bus
        m.d.comb += [
            ax.awvalid.eq(self.awvalid), ax.awaddr.eq(self.awaddr), ax.wvalid.eq(self.wvalid),
            ax.wdata.eq(self.wdata), ax.wstrb.eq(self.wstrb), ax.bready.eq(self.bready),
            ax.arvalid.eq(self.arvalid), ax.araddr.eq(self.araddr), ax.rready.eq(self.rready),
            bus.rdata.eq(self.rdata), bus.mapped.eq(regmap_mapped(bus.addr, N_VFS)),
            Assume(~ResetSignal()),
        ]
        self._master_rules(m, ax)
        self._slave_rules(m, ax)
        self._transactions(m, ax, bus)
        return m

    @staticmethod
    def _stable(m: Module, valid, ready, payload, check):
        """``check`` (Assume or Assert) that ``valid`` waits for ``ready`` with a stable
        ``payload``; the previous cycle is kept in registers."""
        was_waiting = Signal()
        prev = Signal(len(payload))
        m.d.sync += [was_waiting.eq(valid & ~ready), prev.eq(payload)]
        m.d.comb += check(~was_waiting | (valid & (payload == prev)))

    def _master_rules(self, m: Module, ax) -> None:
        self._stable(m, ax.awvalid, ax.awready, ax.awaddr, Assume)
        self._stable(m, ax.wvalid, ax.wready, ax.wdata, Assume)
        self._stable(m, ax.wvalid, ax.wready, ax.wstrb, Assume)
        self._stable(m, ax.arvalid, ax.arready, ax.araddr, Assume)

    def _slave_rules(self, m: Module, ax) -> None:
        self._stable(m, ax.bvalid, ax.bready, ax.bresp, Assert)
        self._stable(m, ax.rvalid, ax.rready, ax.rresp, Assert)
        self._stable(m, ax.rvalid, ax.rready, ax.rdata, Assert)

    def _transactions(self, m: Module, ax, bus) -> None:
        aw_hs, w_hs, b_hs = (ax.awvalid & ax.awready, ax.wvalid & ax.wready,
                             ax.bvalid & ax.bready)
        ar_hs, r_hs = ax.arvalid & ax.arready, ax.rvalid & ax.rready
        # Accepted and not yet answered; 3 would mean a third access was taken and lost.
        aw_pend, w_pend, ar_pend = (Signal(range(4), name=n) for n in
                                    ("aw_pend", "w_pend", "ar_pend"))
        m.d.sync += [aw_pend.eq(aw_pend + aw_hs - b_hs), w_pend.eq(w_pend + w_hs - b_hs),
                     ar_pend.eq(ar_pend + ar_hs - r_hs)]
        m.d.comb += [
            Assert((aw_pend <= 2) & (w_pend <= 2) & (ar_pend <= 2)),
            Assert(~ax.bvalid | ((aw_pend >= 1) & (w_pend >= 1))),
            Assert(~ax.rvalid | (ar_pend >= 1)),
            # An access answered and not taken is the one in bvalid: the holding register
            # is free exactly when nothing else is pending.
            Assert(ax.awready == (aw_pend == ax.bvalid)),
            Assert(ax.wready == (w_pend == ax.bvalid)),
            Assert(ax.arready | (ar_pend > ax.rvalid)),
        ]
        # A held pair (AR) is answered within MAX_WAIT cycles unless a response waits.
        w_wait, r_wait = Signal(range(MAX_WAIT + 1)), Signal(range(MAX_WAIT + 1))
        write_held = (aw_pend > ax.bvalid) & (w_pend > ax.bvalid) & ~ax.bvalid
        read_held = (ar_pend > ax.rvalid) & ~ax.rvalid
        m.d.sync += [w_wait.eq(Mux(write_held, w_wait + 1, 0)),
                     r_wait.eq(Mux(read_held, r_wait + 1, 0))]
        m.d.comb += Assert((w_wait < MAX_WAIT) & (r_wait < MAX_WAIT))
        self._wait_invariants(m, ax, w_wait, r_wait, write_held, read_held,
                              (aw_pend, w_pend, ar_pend))
        self._error_rules(m, ax, bus, aw_hs, w_hs, ar_hs, r_hs, ar_pend)

    def _wait_invariants(self, m: Module, ax, w_wait, r_wait, write_held, read_held,
                         pending) -> None:
        """Why a held access waits so little, as the slave's state says it (k-induction
        needs it: the counters alone may start anywhere). An unanswered write is held in
        AW/W or answered, a read held in AR, in the capture stage or answered; a held
        write goes at once unless a read went first (then ``last_was_read`` gives the
        write the next cycle); a held read waits for at most one write, then spends one
        cycle in capture."""
        dut = self.dut
        lwr, capture = dut._last_was_read, dut._r_capture
        aw_pend, w_pend, ar_pend = pending
        m.d.comb += [
            Assert(aw_pend == ax.bvalid + ~ax.awready), Assert(w_pend == ax.bvalid + ~ax.wready),
            Assert(ar_pend == ax.rvalid + capture + ~ax.arready),
            Assert(~(capture & ax.rvalid)),
            Assert(w_wait <= 2), Assert((w_wait != 2) | ~write_held),
            Assert((w_wait != 1) | ~write_held | lwr),
            Assert(r_wait <= 3), Assert((r_wait != 3) | ~read_held),
            Assert((r_wait != 2) | ~read_held | capture),
            Assert((r_wait != 1) | ~read_held | capture | (~lwr & ~ax.arready)),
        ]

    def _error_rules(self, m: Module, ax, bus, aw_hs, w_hs, ar_hs, r_hs, ar_pend) -> None:
        aw_addr, w_data, w_strb = Signal(ADDR_BITS), Signal(32), Signal(4)
        ar_last = Signal(ADDR_BITS)
        with m.If(aw_hs):
            m.d.sync += aw_addr.eq(ax.awaddr)
        with m.If(w_hs):
            m.d.sync += [w_data.eq(ax.wdata), w_strb.eq(ax.wstrb)]
        with m.If(ar_hs):
            m.d.sync += ar_last.eq(ax.araddr)
        # The two unanswered reads' addresses, oldest first (a new AR can arrive while
        # the previous read's data is on its way).
        ar_old = [Signal(ADDR_BITS, name=f"ar_old_{i}") for i in range(2)]
        with m.If(r_hs):
            m.d.sync += ar_old[0].eq(ar_old[1])
        with m.If(ar_hs):
            with m.If((ar_pend - r_hs) == 0):
                m.d.sync += ar_old[0].eq(ax.araddr)
            with m.Else():
                m.d.sync += ar_old[1].eq(ax.araddr)
        dut = self.dut
        m.d.comb += [
            # What the holding registers hold (k-induction needs it), and the order of
            # the unanswered reads.
            Assert(ax.awready | (dut._aw_addr == aw_addr)),
            Assert(ax.wready | ((dut._w_data == w_data) & (dut._w_strb == w_strb))),
            Assert(ax.arready | (dut._ar_addr == ar_last)),
            Assert((ar_pend != 1) | (ar_old[0] == ar_last)),
            Assert((ar_pend != 2) | (ar_old[1] == ar_last)),
        ]
        word = lambda a: a[2:] << 2  # noqa: E731
        write_code = _expected(aw_addr, regmap_mapped(word(aw_addr), N_VFS),
                               w_strb != FULL_STROBE)
        read_code = _expected(ar_old[0], regmap_mapped(word(ar_old[0]), N_VFS), 0)
        m.d.comb += [
            Assert(~bus.we | ((write_code == AxiResp.OKAY) & (bus.addr == word(aw_addr))
                              & (bus.wdata == w_data) & ~bus.re)),
            Assert(~bus.re | ((_expected(ar_last, regmap_mapped(word(ar_last), N_VFS), 0)
                               == AxiResp.OKAY) & (bus.addr == word(ar_last)))),
        ]
        # Response codes when the response appears (the access ran the cycle(s) before).
        b_prev, r_prev, re_q = Signal(), Signal(), Signal()
        bus_data = Signal(32)
        m.d.sync += [b_prev.eq(ax.bvalid), r_prev.eq(ax.rvalid), re_q.eq(bus.re)]
        with m.If(re_q):
            m.d.sync += bus_data.eq(self.rdata)
        b_new, r_new = ax.bvalid & ~b_prev, ax.rvalid & ~r_prev
        m.d.comb += [
            Assert(~b_new | (ax.bresp == write_code)),
            Assert(~r_new | ((ax.rresp == read_code)
                             & (ax.rdata == Mux(read_code == AxiResp.OKAY, bus_data, 0)))),
        ]
        for code in (AxiResp.OKAY, AxiResp.SLVERR, AxiResp.DECERR):
            m.d.comb += [Cover(b_new & (ax.bresp == code)), Cover(r_new & (ax.rresp == code))]
        m.d.comb += [Cover(ax.bvalid & ~ax.bready & ~ax.awready & ~ax.wready),
                     Cover(ax.rvalid & ~ax.rready & ~ax.arready),
                     Cover(bus.we & ax.rvalid), Cover(bus.re & ax.bvalid)]


BLOCK = FormalBlock("csr", CsrHarness, depth=20, prove_depth=8, cover_depth=12,
                    faults=FAULTS, test_depth=4)
