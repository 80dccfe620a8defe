"""A UART transmitter, 8N1: the self-test's text report."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from model.common import check_int

__all__ = ["UartTx"]


class UartTx(wiring.Component):
    """Sends each byte taken on ``data`` as a start bit, 8 data bits LSB first and a stop
    bit, ``divisor`` clock cycles per bit (``clk_hz // baud``); ``tx`` idles high.

    Members
    -------
    data : In(stream.Signature(8))
    tx : Out(1)
    """

    def __init__(self, divisor: int):
        check_int("UartTx", "divisor", divisor, 2, 1 << 24)
        self.divisor = divisor
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1)})

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10, init=0x3FF)       # stop bit, 8 data bits, start bit: LSB out first
        bits_left = Signal(range(11))
        timer = Signal(range(self.divisor))
        m.d.comb += [self.tx.eq(shift[0]), self.data.ready.eq(bits_left == 0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.data.payload, Const(1, 1))),
                         bits_left.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(bits_left != 0):
            with m.If(timer == 0):
                m.d.sync += [shift.eq(Cat(shift[1:], Const(1, 1))), bits_left.eq(bits_left - 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
