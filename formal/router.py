"""Formal harness of the VF router (``hdl/router.py``).

Formal size: 2 VFs, 2 devices of one slot, queues of 2, 2 requests in flight per VF, 3-bit
VM tags. The VM numbers each VF's requests through the tag (assumed: the request accepted
for VF v carries tag = the count of v's earlier requests, mod 8); each device is an in-order
device with one request inside, its accept and answer times free. ``ctl`` is free (PLACE,
UNPLACE, HOLD and RELEASE at any time). Asserted, per VF: every response carries the tag of
the VF's oldest unanswered request (order kept, nothing dropped or duplicated, held or
released), and a response comes only while the VF has one outstanding. Lemmas, asserted as
well (and, once proven at a step, facts that speed up BMC's later steps): outstanding =
``queued + in_flight`` (each within its bound), a response only while ``in_flight != 0``,
requests reach the devices in order (tag = answered + ``in_flight``), and a device holding
one of the VF's requests holds its oldest, alone in flight. The request's
``data`` is abstracted (0): the router only copies it, and the property is about tags.
Covered: HOLD, then RELEASE at another device while a request is inside the old device and
one or two wait in the queue, up to the last of them answered (steps 5 and 8).
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cat, Cover, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from hdl.router import Router, control_layout, request_layout
from model.router import RouterOp

from .core import FormalBlock

__all__ = ["BLOCK", "RouterHarness"]

N_VFS, TAG_BITS, QUEUE_DEPTH, MAX_IN_FLIGHT = 2, 3, 2, 2


class RouterHarness(wiring.Component):
    def __init__(self, fault: str | None = None):
        self.dut = Router(N_VFS, n_devices=2, slots_per_device=(1, 1), addr_bits=1,
                          tag_bits=TAG_BITS, queue_depth=QUEUE_DEPTH,
                          max_in_flight=MAX_IN_FLIGHT,
                          _fault_inject=fault)
        d = self.dut
        super().__init__({
            "req_valid": In(1), "req": In(request_layout(d.vf_bits, 1, TAG_BITS)),
            "ctl_valid": In(1), "ctl": In(control_layout(d.vf_bits, 2, 1)),
            "resp_ready": In(1), "dev_take": In(2), "dev_answer": In(2),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        m.d.comb += [
            dut.req.valid.eq(self.req_valid), dut.req.payload.eq(self.req),
            # The payload abstracted: the router copies op/addr/data without looking at
            # them (no control decision reads them), and the property is about tags.
            dut.req.payload.data.eq(0),
            dut.ctl.valid.eq(self.ctl_valid), dut.ctl.payload.eq(self.ctl),
            dut.resp.ready.eq(self.resp_ready), Assume(~ResetSignal()),
        ]
        devices = [self._device(m, dut.dev_req[d], dut.dev_resp[d], self.dev_take[d],
                                self.dev_answer[d]) for d in range(2)]
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
            holds = [full & (tag[TAG_BITS:] == v) for full, tag in devices]
            # Lemmas, asserted too: the router's own bookkeeping agrees with the requests
            # seen, and requests reach the devices in order. Once proven at a step, BMC
            # keeps them as facts for the later steps: with them BMC to depth 10 takes
            # 48 s instead of over 8 minutes.
            m.d.comb += [
                # every outstanding request is queued or in flight, within the bounds
                Assert((dut.in_flight[v] + dut.queued[v])[:TAG_BITS]
                       == outstanding[:TAG_BITS]),
                Assert(dut.queued[v] <= QUEUE_DEPTH),
                Assert(dut.in_flight[v] <= MAX_IN_FLIGHT),
                # a response only for a request in flight
                Assert(~mine_resp | (dut.in_flight[v] != 0)),
                # v's requests in flight are all at one target: never in both devices
                Assert(~(holds[0] & holds[1])),
            ]
            for d, (_, tag) in enumerate(devices):
                port = dut.dev_req[d]
                m.d.comb += [
                    # a request leaves for a device in order: the next after those in flight
                    Assert(~(port.valid & port.ready & (port.payload.tag[TAG_BITS:] == v))
                           | (port.payload.tag[:TAG_BITS]
                              == (answered + dut.in_flight[v])[:TAG_BITS])),
                    # a device holding one of v's requests holds its oldest, alone in flight
                    Assert(~holds[d] | ((tag[:TAG_BITS] == answered)
                                        & (dut.in_flight[v] == 1))),
                ]
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
            # A full move: HOLD, then RELEASE at another device while one of the VF's
            # requests is inside the old device and others wait in its queue (one; the
            # queue full), until the last of them is answered (the old device's first, then
            # the queue drained at the new one).
            old_busy = Signal(name=f"old_busy_{v}")   # v's request inside its device
            m.d.comb += old_busy.eq(Cat(*(holds[d] & (dut.vf_device[v] == d)
                                          for d in range(2))).any())
            move = (self.ctl_valid & (self.ctl.op == RouterOp.RELEASE) & (self.ctl.vf == v)
                    & (self.ctl.slot == 0) & dut.held[v] & dut.placed[v]
                    & (self.ctl.device != dut.vf_device[v]) & old_busy)
            for n_queued in (1, 2):
                moving = Signal(name=f"moving_{v}_{n_queued}")
                with m.If(move & (dut.queued[v] == n_queued)):
                    m.d.sync += moving.eq(1)
                m.d.comb += Cover(moving & mine_resp & (outstanding[:TAG_BITS] == 1))
        m.d.comb += Cover(self.ctl_valid & (self.ctl.op == RouterOp.RELEASE)
                          & (dut.queued[0] == 2))
        return m

    @staticmethod
    def _device(m: Module, req, resp, take, answer) -> tuple[Signal, Signal]:
        """An in-order device holding one request: takes it when ``take``, answers it
        (echoing the tag) when ``answer``. Returns (full, the tag it holds)."""
        full = Signal()
        tag = Signal(len(req.payload.tag))
        m.d.comb += [req.ready.eq(~full & take), resp.valid.eq(full & answer),
                     resp.payload.tag.eq(tag)]
        with m.If(resp.valid & resp.ready):
            m.d.sync += full.eq(0)
        with m.If(req.valid & req.ready):
            m.d.sync += [full.eq(1), tag.eq(req.payload.tag)]
        return full, tag


# BMC depth 10 (steps 0-9): the longest cover above, the move with the queue full, ends
# in step 8, so the BMC window holds it whole with a step to spare (docs/formal.md).
# memory_map turns the queue memory and the error FIFO into flip-flops, `--syn` (the model
# as gates through abc) halves the solver time, the lemmas above cut it further.
BLOCK = FormalBlock("router", RouterHarness, depth=10, prove_depth=None, cover_depth=12,
                    faults=("drop_held", "ignore_in_flight"), test_depth=7,
                    script=("flatten", "memory_map", "opt -fast"),
                    engine="smtbmc --syn yices")
