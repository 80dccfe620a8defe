"""model/router.py: the VF table's command semantics, and the golden router catching every
kind of violation it promises to catch (so the scoreboards built on it can fail)."""

from __future__ import annotations

import pytest

from model.router import (
    GoldenRouter,
    RouterCommand,
    RouterOp,
    RouterRequest,
    RouterResponse,
    RouterTable,
)

SLOTS = (4, 2)
TAG_BITS = 4


# ---------------------------------------------------------------- RouterTable
def test_table_starts_as_given():
    table = RouterTable(3, SLOTS, initial=[(0, 1), None, (1, 1)])
    assert [table.location(v) for v in range(3)] == [(0, 1), None, (1, 1)]
    assert not any(table.held(v) for v in range(3))
    assert [table.error_now(v) for v in range(4)] == [False, True, False, True]


def test_table_commands():
    table = RouterTable(2, SLOTS)
    assert table.apply(RouterCommand(RouterOp.PLACE, 0, 1, 1))
    assert table.location(0) == (1, 1) and not table.held(0)
    assert table.apply(RouterCommand(RouterOp.HOLD, 0))
    assert table.held(0) and table.location(0) == (1, 1) and not table.error_now(0)
    assert table.apply(RouterCommand(RouterOp.UNPLACE, 0))
    # Held and not placed: requests wait (no error) until RELEASE places the VF.
    assert table.held(0) and table.location(0) is None and not table.error_now(0)
    assert table.apply(RouterCommand(RouterOp.RELEASE, 0, 0, 3))
    assert not table.held(0) and table.location(0) == (0, 3)
    assert table.apply(RouterCommand(RouterOp.UNPLACE, 0))
    assert table.error_now(0)
    # PLACE on a held VF moves it and keeps it held.
    assert table.apply(RouterCommand(RouterOp.HOLD, 1))
    assert table.apply(RouterCommand(RouterOp.PLACE, 1, 0, 0))
    assert table.held(1) and table.location(1) == (0, 0)


@pytest.mark.parametrize("cmd", [
    RouterCommand(RouterOp.HOLD, 2),               # unknown VF id
    RouterCommand(RouterOp.UNPLACE, 7),
    RouterCommand(RouterOp.PLACE, 0, 2, 0),        # no device 2
    RouterCommand(RouterOp.PLACE, 0, 1, 2),        # device 1 has 2 slots
    RouterCommand(RouterOp.RELEASE, 1, 0, 4),
])
def test_table_refuses_invalid_commands(cmd):
    table = RouterTable(2, SLOTS, initial=[(0, 0), None])
    table.apply(RouterCommand(RouterOp.HOLD, 1))
    before = [(e.placed, e.device, e.slot, e.held) for e in table.entries]
    assert not table.apply(cmd)
    assert [(e.placed, e.device, e.slot, e.held) for e in table.entries] == before


# ---------------------------------------------------------------- GoldenRouter
def req(vf: int, tag: int, addr: int = 5) -> RouterRequest:
    return RouterRequest(vf, 0, addr, 0x1000 + tag, tag)


class Flow:
    """Feeds a GoldenRouter the events of a well-behaved router, step by step."""

    def __init__(self, n_vfs: int = 3, initial=((0, 0), (1, 1), None)):
        self.golden = GoldenRouter(n_vfs, SLOTS, TAG_BITS, initial=list(initial))
        self.cycle = 0

    def tick(self, n: int = 1) -> int:
        self.cycle += n
        return self.cycle

    def through_device(self, r: RouterRequest, device: int, slot: int, data: int = 7) -> None:
        g = self.golden
        g.accept(self.tick(), r)
        g.dispatch(self.cycle, device, slot, r.vf, r.op, r.addr, r.data, r.tag)
        g.device_response(self.tick(3), device, r.vf, r.tag, data, 0)
        g.response(self.cycle, RouterResponse(r.vf, r.tag, data, 0))

    def clean(self) -> bool:
        totals = self.golden.finish()
        return not self.golden.messages and totals.mismatches == 0


def test_golden_accepts_a_correct_run():
    f = Flow()
    g = f.golden
    f.through_device(req(0, 1), 0, 0)
    # Unknown and unplaced VF ids: router errors.
    for r in (req(9, 2), req(2, 3)):
        g.accept(f.tick(), r)
        g.response(f.tick(2), RouterResponse(r.vf, r.tag, 0, 1))
    # Hold VF 1, queue two requests, release at (0, 2): they are dispatched there in order.
    g.control(f.tick(), RouterCommand(RouterOp.HOLD, 1))
    a, b = req(1, 4), req(1, 5)
    g.accept(f.tick(), a)
    g.accept(f.tick(), b)
    f.through_device(req(0, 6), 0, 0)  # another VF flows meanwhile
    g.control(f.tick(), RouterCommand(RouterOp.RELEASE, 1, 0, 2))
    for r in (a, b):
        g.dispatch(f.tick(), 0, 2, r.vf, r.op, r.addr, r.data, r.tag)
    for r in (a, b):
        g.device_response(f.tick(), 0, r.vf, r.tag, 11, 1)
        g.response(f.cycle, RouterResponse(r.vf, r.tag, 11, 1))
    assert f.clean(), g.messages
    totals = g.totals
    assert (totals.requests, totals.responses, totals.router_errors) == (6, 6, 2)
    assert (totals.dispatched, totals.device_errors, totals.held_dispatches) == ([4, 0], 2, 2)


def test_golden_command_takes_effect_next_cycle():
    f = Flow()
    g = f.golden
    r = req(0, 1)
    g.accept(f.tick(), r)
    # Dispatched in the HOLD's own cycle: legal (the table changes from the next cycle).
    g.dispatch(f.cycle, 0, 0, r.vf, r.op, r.addr, r.data, r.tag)
    g.control(f.cycle, RouterCommand(RouterOp.HOLD, 0))
    g.device_response(f.tick(), 0, 0, r.tag, 3, 0)
    g.response(f.cycle, RouterResponse(0, r.tag, 3, 0))
    r2 = req(0, 2)
    g.accept(f.tick(), r2)
    g.dispatch(f.cycle, 0, 0, r2.vf, r2.op, r2.addr, r2.data, r2.tag)  # held: illegal
    assert any("held" in text for text in g.messages)


def test_golden_router_error_legal_in_a_past_window():
    """VF 0 unplaced for one cycle while its request waited: the error is legal."""
    f = Flow()
    g = f.golden
    r = req(0, 1)
    g.accept(f.tick(), r)
    g.control(f.tick(), RouterCommand(RouterOp.UNPLACE, 0))
    g.control(f.tick(), RouterCommand(RouterOp.PLACE, 0, 0, 0))
    g.response(f.tick(5), RouterResponse(0, r.tag, 0, 1))
    assert f.clean(), g.messages


def faulty(name: str, flow: Flow) -> None:
    g, r = flow.golden, req(0, 1)
    r2 = req(0, 2)
    if name == "duplicate response":
        flow.through_device(r, 0, 0)
        g.response(flow.tick(), RouterResponse(0, 1, 7, 0))
    elif name == "responses reordered within a VF":
        for x in (r, r2):
            g.accept(flow.tick(), x)
            g.dispatch(flow.cycle, 0, 0, 0, x.op, x.addr, x.data, x.tag)
            g.device_response(flow.tick(), 0, 0, x.tag, 7, 0)
        g.response(flow.tick(), RouterResponse(0, 2, 7, 0))
        g.response(flow.tick(), RouterResponse(0, 1, 7, 0))
    elif name == "response to the wrong VF":
        g.accept(flow.tick(), r)
        g.dispatch(flow.cycle, 0, 0, 0, r.op, r.addr, r.data, r.tag)
        g.device_response(flow.tick(), 0, 0, r.tag, 7, 0)
        g.response(flow.tick(), RouterResponse(1, r.tag, 7, 0))
    elif name == "response data not the device's":
        g.accept(flow.tick(), r)
        g.dispatch(flow.cycle, 0, 0, 0, r.op, r.addr, r.data, r.tag)
        g.device_response(flow.tick(), 0, 0, r.tag, 7, 0)
        g.response(flow.tick(), RouterResponse(0, r.tag, 8, 0))
    elif name == "dispatched while held":
        g.control(flow.tick(), RouterCommand(RouterOp.HOLD, 0))
        g.accept(flow.tick(), r)
        g.dispatch(flow.cycle, 0, 0, 0, r.op, r.addr, r.data, r.tag)
    elif name == "dispatched to the old location":
        g.control(flow.tick(), RouterCommand(RouterOp.HOLD, 0))
        g.accept(flow.tick(), r)
        g.control(flow.tick(), RouterCommand(RouterOp.RELEASE, 0, 1, 0))
        g.dispatch(flow.tick(), 0, 0, 0, r.op, r.addr, r.data, r.tag)
    elif name == "dispatched out of order":
        g.accept(flow.tick(), r)
        g.accept(flow.tick(), r2)
        g.dispatch(flow.tick(), 0, 0, 0, r2.op, r2.addr, r2.data, r2.tag)
    elif name == "payload corrupted":
        g.accept(flow.tick(), r)
        g.dispatch(flow.tick(), 0, 0, 0, r.op, r.addr ^ 1, r.data, r.tag)
    elif name == "router error for a placed VF":
        g.accept(flow.tick(), r)
        g.response(flow.tick(2), RouterResponse(0, r.tag, 0, 1))
    elif name == "router error for a held VF":
        g.control(flow.tick(), RouterCommand(RouterOp.UNPLACE, 0))
        g.control(flow.tick(), RouterCommand(RouterOp.HOLD, 0))
        flow.tick()
        g.accept(flow.tick(), r)
        g.response(flow.tick(2), RouterResponse(0, r.tag, 0, 1))
    elif name == "router error with data":
        r3 = req(2, 1)
        g.accept(flow.tick(), r3)
        g.response(flow.tick(2), RouterResponse(2, r3.tag, 5, 1))
    elif name == "success for an unknown VF":
        r3 = req(9, 1)
        g.accept(flow.tick(), r3)
        g.response(flow.tick(2), RouterResponse(9, r3.tag, 0, 0))
    elif name == "lost request":
        g.accept(flow.tick(), r)
        g.dispatch(flow.cycle, 0, 0, 0, r.op, r.addr, r.data, r.tag)
    elif name == "response before the device answered":
        g.accept(flow.tick(), r)
        g.dispatch(flow.cycle, 0, 0, 0, r.op, r.addr, r.data, r.tag)
        g.response(flow.tick(), RouterResponse(0, r.tag, 0, 0))
        g.device_response(flow.tick(), 0, 0, r.tag, 0, 0)
    else:
        raise AssertionError(name)


FAULTS = ["duplicate response", "responses reordered within a VF", "response to the wrong VF",
          "response data not the device's", "dispatched while held",
          "dispatched to the old location", "dispatched out of order", "payload corrupted",
          "router error for a placed VF", "router error for a held VF",
          "router error with data", "success for an unknown VF", "lost request",
          "response before the device answered"]


@pytest.mark.parametrize("fault", FAULTS)
def test_golden_catches(fault):
    flow = Flow()
    faulty(fault, flow)
    assert not flow.clean(), f"the golden router missed: {fault}"


def test_golden_events_must_be_in_time_order():
    g = GoldenRouter(1, SLOTS, TAG_BITS, initial=[(0, 0)])
    g.accept(5, req(0, 1))
    g.control(4, RouterCommand(RouterOp.HOLD, 0))
    assert any("time order" in text for text in g.messages)
