"""Formal harness of the VF router (``hdl/router.py``).

Formal size: 2 VFs, 2 devices of one slot, queues of 2, 2 requests in flight per VF, 3-bit
VM tags. The VM numbers each VF's requests through the tag (assumed: the request accepted
for VF v carries tag = the count of v's earlier requests, mod 8); each device is an in-order
device with one request inside, its accept and answer times free. ``ctl`` is free (PLACE,
UNPLACE, HOLD and RELEASE at any time). Asserted, per VF: every response carries the tag of
the VF's oldest unanswered request (order kept, nothing dropped or duplicated, held or
released), and a response comes only while the VF has one outstanding.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cover, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.router import Router, control_layout, request_layout
from model.router import RouterOp

from .core import FormalBlock

__all__ = ["BLOCK", "RouterHarness"]

N_VFS, TAG_BITS = 2, 3


class RouterHarness(wiring.Component):
    def __init__(self, fault: str | None = None):
        self.dut = Router(N_VFS, n_devices=2, slots_per_device=(1, 1), addr_bits=1,
                          tag_bits=TAG_BITS, queue_depth=2, max_in_flight=2,
                          _fault_inject=fault)
        d = self.dut
        super().__init__({
            "req_valid": In(1), "req": In(request_layout(d.vf_bits, 1, TAG_BITS)),
            "ctl_valid": In(1), "ctl": In(control_layout(d.vf_bits, 2, 1)),
            "resp_ready": In(1), "dev_take": In(2), "dev_answer": In(2), "dev_data": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.d.comb += [
            dut.req.valid.eq(self.req_valid), dut.req.payload.eq(self.req),
            dut.ctl.valid.eq(self.ctl_valid), dut.ctl.payload.eq(self.ctl),
            dut.resp.ready.eq(self.resp_ready), Assume(~ResetSignal()),
        ]
        for d in range(2):
            self._device(m, dut.dev_req[d], dut.dev_resp[d], self.dev_take[d],
                         self.dev_answer[d])
        req_fire = dut.req.valid & dut.req.ready
        resp_fire = dut.resp.valid & dut.resp.ready
        for v in range(N_VFS):
            sent = Signal(TAG_BITS, name=f"sent_{v}")
            answered = Signal(TAG_BITS, name=f"answered_{v}")
            mine_req = req_fire & (dut.req.payload.vf == v)
            mine_resp = resp_fire & (dut.resp.payload.vf == v)
            with m.If(mine_req):
                m.d.sync += sent.eq(sent + 1)
            with m.If(mine_resp):
                m.d.sync += answered.eq(answered + 1)
            outstanding = sent - answered
            m.d.comb += [
                Assume(~(dut.req.valid & (dut.req.payload.vf == v))
                       | (dut.req.payload.tag == sent)),
                # at most queue + in flight + error FIFO + the response port: 8 never reached
                Assume(outstanding[:TAG_BITS] != 7),
                Assert(~mine_resp | ((dut.resp.payload.tag == answered)
                                     & (outstanding[:TAG_BITS] != 0))),
                Cover(mine_resp & dut.held[v] & (answered == 2)),
                Cover(mine_resp & (dut.resp.payload.error == 1)),
                Cover(mine_req & dut.held[v]),
            ]
        m.d.comb += Cover(self.ctl_valid & (self.ctl.op == RouterOp.RELEASE)
                          & (dut.queued[0] == 2))
        return m

    @staticmethod
    def _device(m: Module, req, resp, take, answer) -> None:
        """An in-order device holding one request: takes it when ``take``, answers it
        (echoing the tag) when ``answer``."""
        full = Signal()
        tag = Signal(len(req.payload.tag))
        m.d.comb += [req.ready.eq(~full & take), resp.valid.eq(full & answer),
                     resp.payload.tag.eq(tag)]
        with m.If(resp.valid & resp.ready):
            m.d.sync += full.eq(0)
        with m.If(req.valid & req.ready):
            m.d.sync += [full.eq(1), tag.eq(req.payload.tag)]


BLOCK = FormalBlock("router", RouterHarness, depth=12, prove_depth=None, cover_depth=12,
                    faults=("drop_held",), test_depth=7)
