"""hdl/router.py in amaranth.sim: parameter checks, the port contract the system relies on,
directed cases, and random traffic scored by model.router.GoldenRouter (through the
cycle-level bench tb.router.bench, the same one the cocotb tests use)."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Fragment, Module, Value
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hdl.formats import system_request_layout, system_response_layout
from hdl.router import Router
from hdl.vf_unit import VFUnit
from model.config import SystemConfig
from model.router import RouterCommand, RouterOp, RouterRequest
from tb.router import CONFIGS, RouterConfig
from tb.router.bench import (
    SETTLE,
    DeviceParams,
    RouterBench,
    Traffic,
    hold_windows,
    merge_schedules,
    placement_commands,
    release_all,
    table_churn,
)
from tests.checks import assert_refused

SMALL = CONFIGS["two_devices"]
NARROW = CONFIGS["three_devices"]


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"n_vfs": 0}, ValueError, "Router n_vfs must be between 1 and 255, not 0"),
    ({"n_vfs": 2.0}, TypeError, "Router n_vfs must be an integer, not 2.0"),
    ({"n_vfs": 4, "n_devices": 9, "slots_per_device": (1,) * 9}, ValueError,
     "Router n_devices must be between 1 and 8, not 9"),
    ({"n_vfs": 4, "slots_per_device": 8}, TypeError,
     "Router slots_per_device must be a sequence of integers, not 8"),
    ({"n_vfs": 4, "slots_per_device": (8, 4, 2)}, ValueError,
     "Router slots_per_device must have n_devices=2 entries, not 3"),
    ({"n_vfs": 4, "slots_per_device": (8, 0)}, ValueError,
     "Router slots_per_device entry must be between 1 and 256, not 0"),
    ({"n_vfs": 4, "addr_bits": 0}, ValueError, "Router addr_bits must be between 1 and 32, not 0"),
    ({"n_vfs": 4, "tag_bits": 17}, ValueError, "Router tag_bits must be between 1 and 16, not 17"),
    ({"n_vfs": 4, "queue_depth": 6}, ValueError,
     "Router queue_depth must be a power of two, not 6"),
    ({"n_vfs": 4, "queue_depth": 0}, ValueError,
     "Router queue_depth must be between 1 and 1024, not 0"),
    ({"n_vfs": 4, "max_in_flight": 0}, ValueError,
     "Router max_in_flight must be between 1 and 255, not 0"),
    ({"n_vfs": 5, "vf_bits": 2}, ValueError, "Router vf_bits must be between 3 and 8, not 2"),
    ({"n_vfs": 2, "initial": [(0, 0)]}, ValueError,
     "Router initial must have n_vfs=2 entries, not 1"),
    ({"n_vfs": 2, "initial": [(0, 0), (1, 4)]}, ValueError,
     "Router initial[1] = (1, 4) is not a (device, slot) that exists"),
])
def test_parameters_are_checked(kwargs, error, message):
    assert_refused(error, message, Router, **kwargs)


def test_ports_fit_the_system_and_the_vf_units():
    """What the integrator needs: the VM side has the system's layouts, and each device
    port connects to that device's VFUnit (tag = VM tag + VF index bits) with no glue."""
    config = SystemConfig()
    router = Router.for_system(config)
    assert router.req.payload.shape() == system_request_layout(config)
    assert router.resp.payload.shape() == system_response_layout(config)
    assert router.device_tag_bits == config.tag_bits + 3
    m = Module()
    for d, slots in enumerate((config.host_slots, config.offload_slots)):
        unit = VFUnit(config.layout, slots, 4, tag_bits=router.device_tag_bits)
        m.submodules[f"unit_{d}"] = unit
        wiring.connect(m, router.dev_req[d], unit.req)
        wiring.connect(m, unit.resp, router.dev_resp[d])
    assert [router.dev_req[d] is getattr(router, f"dev_req_{d}") for d in (0, 1)] == [True] * 2
    m.submodules.router = router
    Fragment.get(m, None)  # elaborates: the connections are legal


def test_for_system_takes_the_queue_depth_and_in_flight_limit_from_the_config():
    default = Router.for_system(SystemConfig())
    assert (default.queue_depth, default.max_in_flight) == (8, 15)
    small = Router.for_system(SystemConfig(router_queue_depth=2, router_max_in_flight=3))
    assert (small.queue_depth, small.max_in_flight) == (2, 3)


# ---------------------------------------------------------------- the bench in amaranth.sim
def _port(dut, name: str):
    obj = dut
    for part in name.split("__"):
        obj = getattr(obj, part)
    return Value.cast(obj)


def run_bench(bench: RouterBench, max_cycles: int, *, during=None) -> None:
    """Run ``bench`` on a fresh harness until it is idle; fail on any scoreboard message,
    an unanswered request or a hang. ``during(bench)`` runs after every edge."""
    dut = bench.cfg.build()
    inputs = {name: _port(dut, name) for name in bench.input_names()}
    outputs = {name: _port(dut, name) for name in bench.output_names()}

    async def testbench(ctx):
        settle = SETTLE
        while (bench.busy() or settle) and bench.cycle < max_cycles:
            settle -= not bench.busy()
            for name, value in bench.drive().items():
                ctx.set(inputs[name], value)
            sampled = await ctx.tick().sample(*outputs.values())
            bench.edge(dict(zip(outputs, sampled[-len(outputs):], strict=True)))
            if during:
                during(bench)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    hung = bench.busy()
    totals = bench.model.finish()
    assert not bench.model.messages, "\n".join(bench.model.messages[:10])
    problems = bench.final_checks(totals)
    assert not problems, "\n".join(problems)
    assert not hung, f"not done after {max_cycles} cycles: {totals.to_dict()}"
    assert totals.mismatches == 0 and totals.lost == 0


def placed_bench(cfg: RouterConfig, seed: int, unplaced=(), **kwargs) -> RouterBench:
    """A bench whose first request comes after every VF (but ``unplaced``) was placed."""
    placement = placement_commands(cfg, unplaced)
    bench = RouterBench(cfg, seed, first_request_cycle=len(placement) + 1, **kwargs)
    bench.commands.extend((0, cmd) for cmd in placement)
    return bench


def test_direct_path_is_combinational():
    """A placed VF's request reaches its device in the cycle it is offered (tag =
    Cat(tag, VF)); the device's response is on `resp` in the cycle it is offered; a device
    that refuses makes the request queue, not stall; the queue drains the next cycle."""
    dut = Router(3, slots_per_device=(4, 2), addr_bits=6, tag_bits=4,
                 initial=[(0, 1), (1, 1), None])

    async def testbench(ctx):
        ctx.set(dut.resp.ready, 1)
        ctx.set(dut.req.payload, {"vf": 1, "op": 2, "addr": 9, "data": 77, "tag": 5})
        ctx.set(dut.req.valid, 1)
        ctx.set(dut.dev_req[1].ready, 1)
        assert ctx.get(dut.dev_req[1].valid) and not ctx.get(dut.dev_req[0].valid)
        p = ctx.get(dut.dev_req[1].payload)
        assert (p.slot, p.op, p.addr, p.data, p.tag) == (1, 2, 9, 77, 5 | 1 << 4)
        assert ctx.get(dut.req.ready)
        await ctx.tick()
        # Device 0 refuses VF 0's request: it is queued (req.ready stays high) ...
        ctx.set(dut.req.payload, {"vf": 0, "op": 1, "addr": 3, "data": 4, "tag": 6})
        assert ctx.get(dut.dev_req[0].valid) and ctx.get(dut.req.ready)
        await ctx.tick()
        ctx.set(dut.req.valid, 0)
        assert ctx.get(dut.queued[0]) == 1
        # ... and offered again from the queue in the next cycle.
        assert ctx.get(dut.dev_req[0].valid)
        p = ctx.get(dut.dev_req[0].payload)
        assert (p.slot, p.op, p.addr, p.data, p.tag) == (1, 1, 3, 4, 6)
        ctx.set(dut.dev_req[0].ready, 1)
        await ctx.tick()
        ctx.set(dut.dev_req[0].ready, 0)
        assert ctx.get(dut.queued[0]) == 0 and ctx.get(dut.in_flight[0]) == 1
        ctx.set(dut.dev_resp[1].payload, {"slot": 1, "tag": 5 | 1 << 4, "data": 123,
                                          "error": 1})
        ctx.set(dut.dev_resp[1].valid, 1)
        assert ctx.get(dut.resp.valid) and ctx.get(dut.dev_resp[1].ready)
        r = ctx.get(dut.resp.payload)
        assert (r.vf, r.tag, r.data, r.error) == (1, 5, 123, 1)
        await ctx.tick()
        ctx.set(dut.dev_resp[1].valid, 0)
        assert ctx.get(dut.in_flight[1]) == 0 and ctx.get(dut.requests) == 2
        assert ctx.get(dut.queued_requests) == 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_unknown_and_unplaced_vf_ids_get_errors():
    cfg = SMALL
    bench = placed_bench(cfg, 2, unplaced=(3,))
    bench.requests.extend([RouterRequest(9, 0, 1, 2, 0), RouterRequest(3, 1, 1, 2, 0),
                           RouterRequest(15, 2, 1, 2, 1), RouterRequest(0, 0, 1, 2, 0),
                           RouterRequest(3, 0, 1, 2, 1), RouterRequest(6, 3, 1, 2, 0)])
    run_bench(bench, 300)
    totals = bench.model.totals
    assert totals.router_errors == 5 and totals.responses == 6
    assert sum(totals.dispatched) == 1


def test_hold_queues_in_order_and_others_flow():
    """VF 0 (alone on device 0) held: its requests queue (and fill the queue:
    backpressure) while VF 1 on device 1 keeps being dispatched; device 0 gets nothing
    during the hold; RELEASE at device 1 drains VF 0 there, in order."""
    cfg = SMALL
    # VF 0's slot stays open while it is held: only the router keeps its requests back.
    # Devices that always take a request, so VF 0's requests are offered to device 0.
    devices = [DeviceParams(latency=4, capacity=4, backpressure=0.0)] * 2
    bench = placed_bench(cfg, 3, idle_prob=0.0, quiesce_prob=0.0, devices=devices)
    start = bench.first_request_cycle
    bench.commands.append((0, RouterCommand(RouterOp.PLACE, 1, 1, 0)))
    bench.commands.append((start + 3, RouterCommand(RouterOp.HOLD, 0)))
    bench.commands.append((400, RouterCommand(RouterOp.RELEASE, 0, 1, 1)))
    traffic = Traffic(cfg, random.Random(3), unknown_prob=0.0)
    for i in range(60):
        bench.requests.append(traffic.request(0 if i % 3 == 0 else 1))
    during_hold = []   # (dispatches to device 0, to device 1) in each held cycle

    def watch(b):
        if b.model.table.held(0):
            during_hold.append(tuple(b.model.totals.dispatched))
    run_bench(bench, 3000, during=watch)
    flow = bench.flow.report()
    assert flow["queue_full_stalls"] > 0, flow
    assert during_hold[-1][0] == during_hold[0][0], "device 0 got requests of held VF 0"
    assert during_hold[-1][1] - during_hold[0][1] >= 5
    assert bench.flow.windows[0]["others"] >= 5
    assert bench.model.totals.dispatched[0] <= 3   # VF 0's later requests went to device 1


def test_release_waits_for_the_old_device():
    """VF 0 has requests inside a slow device when it is held and released at a fast one:
    the queue drains only after the slow device answered, so responses stay in order."""
    cfg = SMALL
    slow, fast = DeviceParams(latency=40, capacity=4, backpressure=0.0), DeviceParams(1, 4, 0.0)
    bench = placed_bench(cfg, 4, idle_prob=0.0, resp_backpressure=0.0, devices=[slow, fast],
                         quiesce_prob=0.0)
    traffic = Traffic(cfg, random.Random(4), unknown_prob=0.0)
    bench.requests.extend(traffic.request(0) for _ in range(12))
    start = bench.first_request_cycle
    bench.commands.append((start + 5, RouterCommand(RouterOp.HOLD, 0)))
    bench.commands.append((start + 7, RouterCommand(RouterOp.RELEASE, 0, 1, 0)))
    run_bench(bench, 1000)
    assert bench.model.totals.dispatched[0] >= 2 and bench.model.totals.dispatched[1] >= 2


def test_queue_depth_one_and_single_vf():
    cfg = RouterConfig(n_vfs=1, slots_per_device=(1,), vf_bits=2, queue_depth=1,
                       max_in_flight=1)
    bench = placed_bench(cfg, 5)
    bench.commands.extend(hold_windows(cfg, random.Random(5), [0], 10, 400, holds_per_vf=3))
    bench.commands.extend(release_all(cfg, 450))
    bench.requests.extend(Traffic(cfg, random.Random(5), unknown_prob=0.2).requests(80))
    run_bench(bench, 3000)


def random_scenario(cfg: RouterConfig, seed: int, requests: int, span: int,
                    churn: int) -> RouterBench:
    rng = random.Random(seed)
    devices = [DeviceParams(latency=rng.randint(1, 8), capacity=rng.randint(1, 3),
                            backpressure=rng.choice([0.0, 0.2, 0.5])) for _ in
               range(cfg.n_devices)]
    bench = placed_bench(cfg, seed, unplaced=(cfg.n_vfs - 1,), devices=devices,
                         idle_prob=rng.choice([0.0, 0.3]),
                         resp_backpressure=rng.choice([0.0, 0.3]))
    held = rng.sample(range(cfg.n_vfs), max(2, cfg.n_vfs // 2))
    others = [v for v in range(cfg.n_vfs) if v not in held]
    bench.commands.extend(merge_schedules(
        hold_windows(cfg, rng, held, 20, span, holds_per_vf=2, max_len=span // 3),
        table_churn(cfg, rng, others + held[:1], 20, span, churn)))
    bench.commands.extend(release_all(cfg, span + 10))
    bench.requests.extend(Traffic(cfg, rng).requests(requests))
    return bench


@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_random_traffic_holds_relocations(config, seed):
    cfg = CONFIGS[config]
    bench = random_scenario(cfg, seed, requests=500, span=900, churn=12)
    run_bench(bench, 20_000)
    totals, flow = bench.model.totals, bench.flow.report()
    assert totals.requests == 500 and totals.held_dispatches > 0
    assert totals.router_errors > 0 and flow["hold_windows"] >= 2
    assert flow["free_dispatches_while_held"] > 0
