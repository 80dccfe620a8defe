"""An AXI4-Lite master for one register access at a time: the on-chip self-test's control port.

A command ``{write, addr, data}`` taken on ``cmd`` becomes one AXI4-Lite write (AW and W
together, then B) or read (AR, then R); its answer ``{data, resp}`` (the read data, zero for a
write, and BRESP/RRESP) is offered on ``result``. The next command is taken only after the
answer is. Nothing is pipelined: the self-test polls registers, it does not stream them.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.regmap import ADDR_BITS

from ..csr import FULL_STROBE, axil_signature

__all__ = ["AxiLiteMaster", "register_command_layout", "register_result_layout"]


def register_command_layout(addr_bits: int = ADDR_BITS) -> data.StructLayout:
    return data.StructLayout({"write": 1, "addr": addr_bits, "data": 32})


register_result_layout = data.StructLayout({"data": 32, "resp": 2})


class AxiLiteMaster(wiring.Component):
    """One AXI4-Lite access per command.

    Members
    -------
    cmd : In(stream of register_command_layout)   write, byte address, write data
    result : Out(stream of register_result_layout)  read data (0 for a write), response code
    axil : Out(axil_signature(addr_bits))         to the slave
    """

    def __init__(self, addr_bits: int = ADDR_BITS):
        self.addr_bits = addr_bits
        super().__init__({
            "cmd": In(stream.Signature(register_command_layout(addr_bits))),
            "result": Out(stream.Signature(register_result_layout)),
            "axil": Out(axil_signature(addr_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        bus, cmd = self.axil, self.cmd.payload
        aw_done = Signal()
        w_done = Signal()
        m.d.comb += [bus.awaddr.eq(cmd.addr), bus.araddr.eq(cmd.addr),
                     bus.wdata.eq(cmd.data), bus.wstrb.eq(FULL_STROBE)]
        with m.FSM():
            with m.State("IDLE"):
                # The command stays on ``cmd`` (not yet taken) until its answer is.
                m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                with m.If(self.cmd.valid & cmd.write):
                    m.next = "WRITE"
                with m.Elif(self.cmd.valid):
                    m.next = "READ"
            with m.State("WRITE"):
                # AW and W may be taken in either order (A3.3.1); wait for both, then B.
                m.d.comb += [bus.awvalid.eq(~aw_done), bus.wvalid.eq(~w_done)]
                aw_now = aw_done | bus.awready
                w_now = w_done | bus.wready
                m.d.sync += [aw_done.eq(aw_now), w_done.eq(w_now)]
                with m.If(aw_now & w_now):
                    m.next = "WRITE_RESP"
            with m.State("WRITE_RESP"):
                m.d.comb += bus.bready.eq(1)
                with m.If(bus.bvalid):
                    m.d.sync += [self.result.payload.data.eq(0),
                                 self.result.payload.resp.eq(bus.bresp)]
                    m.next = "ANSWER"
            with m.State("READ"):
                m.d.comb += bus.arvalid.eq(1)
                with m.If(bus.arready):
                    m.next = "READ_DATA"
            with m.State("READ_DATA"):
                m.d.comb += bus.rready.eq(1)
                with m.If(bus.rvalid):
                    m.d.sync += [self.result.payload.data.eq(bus.rdata),
                                 self.result.payload.resp.eq(bus.rresp)]
                    m.next = "ANSWER"
            with m.State("ANSWER"):
                m.d.comb += self.result.valid.eq(1)
                with m.If(self.result.ready):
                    m.d.comb += self.cmd.ready.eq(1)
                    m.next = "IDLE"
        return m
