"""A board top: the self-testing system on an amaranth-boards ECP5 platform.

Clock: the board oscillator through an ECP5 PLL to the board's target frequency. Reset:
held while the PLL is not locked or the reset button is pressed, released synchronously
(``ResetSynchronizer``). Outputs: the self-test's LEDs and its UART report (115200 8N1)."""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from .pll import ecp5_pll, ecp5_pll_settings
from .selftest import SelfTest

__all__ = ["BoardTop"]

BAUD = 115_200


class BoardTop(Elaboratable):
    """``board`` is an ``fpga.boards.Board``: its configuration, target clock, reset button."""

    def __init__(self, board, _fault_inject: str | None = None):
        self.board = board
        self.fault_inject = _fault_inject

    def elaborate(self, platform):
        m = Module()
        board = self.board
        clk_res = platform.resources[platform.default_clk, 0]
        fin_mhz = clk_res.clock.frequency / 1e6
        settings = ecp5_pll_settings(fin_mhz, board.target_mhz)
        m.submodules.clk_in = clk_in = io.Buffer("i", platform.request(platform.default_clk,
                                                                       dir="-"))
        m.domains.sync = ClockDomain("sync")
        locked, clk = Signal(), Signal()
        m.submodules.pll = ecp5_pll(settings, clk_in.i, clk, locked)
        m.d.comb += ClockSignal("sync").eq(clk)
        platform.add_clock_constraint(clk, settings.fout_mhz * 1e6)
        button = platform.request(board.reset_button, 0)
        m.submodules.reset = ResetSynchronizer(~locked | button.i, domain="sync")
        clk_hz = round(settings.fout_mhz * 1e6)
        m.submodules.selftest = selftest = SelfTest(board.config, clk_hz=clk_hz, baud=BAUD,
                                                    _fault_inject=self.fault_inject)
        for i in range(8):
            m.d.comb += platform.request("led", i).o.eq(selftest.leds[i])
        m.d.comb += platform.request("uart", 0).tx.o.eq(selftest.uart_tx)
        return m
