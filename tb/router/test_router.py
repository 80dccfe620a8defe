"""cocotb + pyuvm tests of hdl/router.py (behind tb.router.harness.RouterHarness).

Run through tb/router/test_router.py, which builds the configuration named in
``VFMIG_BENCH_CONFIG``. Seeds follow tb/common/seeds.py: every test logs its seed and
``VFMIG_SEED`` set to the logged ``COCOTB_RANDOM_SEED`` reproduces a run.

Environment: ``RouterEnv`` = a request agent (sequencer + driver), a control agent
(sequencer + driver: timed table commands), the monitor (publishes every event the BFM
sees, in edge order, as ``RouterEvent`` on one analysis port), the scoreboard (a
``model.router.GoldenRouter`` fed by those events; checks in ``check_phase``) and a
coverage subscriber that fails in ``report_phase`` when a planned bin was never hit.

All per-cycle work runs in one coroutine (``RouterBfm``) around the pure-Python cycle bench
``tb.router.bench.RouterBench``, which also holds the device models (in-order devices with
latency, capacity and random backpressure; slot quiesce through the harness).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import cocotb
import pyuvm
from cocotb.clock import Clock
from cocotb.triggers import Event, ReadOnly, RisingEdge, with_timeout
from pyuvm import (
    ConfigDB,
    uvm_analysis_port,
    uvm_env,
    uvm_monitor,
    uvm_scoreboard,
    uvm_sequence,
    uvm_sequence_item,
    uvm_subscriber,
    uvm_test,
)

from model.router import GoldenRouter, RouterCommand, RouterOp, RouterRequest, RouterTable
from tb.common.runner import bench_matrix
from tb.common.seeds import bench_seed, generator_seeds
from tb.common.uvm import BfmDriver, ItemListSeq, PlannedCoverage, SequencedAgent
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

CLOCK_NS = 10


# ---------------------------------------------------------------- the bus functional model
class RouterBfm:
    """Runs a ``RouterBench`` on the DUT: per cycle, write the inputs that changed, sample
    the outputs in ReadOnly (payloads only when valid: Icarus leaves them X otherwise),
    then hand the samples to the bench at the rising edge."""

    def __init__(self, dut, bench: RouterBench, depth: int = 2):
        self.dut, self.bench, self.depth = dut, bench, depth
        self.inputs = {name: getattr(dut, name) for name in bench.input_names()}
        self.outputs = {name: getattr(dut, name) for name in bench.output_names()}
        self.valid_of = {name: name.replace("__payload", "__valid")
                         for name in self.outputs if name.endswith("__payload")}
        self._space = Event()
        self._written: dict[str, int] = {}
        for name, value in bench.drive().items():
            self.inputs[name].value = value
            self._written[name] = value

    async def reset(self, cycles: int = 4) -> None:
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    def start(self):
        return cocotb.start_soon(self._run())

    async def send(self, req: RouterRequest) -> None:
        while len(self.bench.requests) >= self.depth:
            self._space.clear()
            await self._space.wait()
        self.bench.requests.append(req)

    async def commands_applied(self) -> None:
        """Wait until every queued command was accepted and is in effect."""
        while self.bench.commands or self.bench.busy_control():
            await RisingEdge(self.dut.clk)
        await RisingEdge(self.dut.clk)

    async def quiet(self, timeout: int) -> None:
        """Wait until every request was answered and the counters settled."""
        start = self.bench.cycle
        settle = SETTLE
        while self.bench.busy() or settle:
            settle = SETTLE if self.bench.busy() else settle - 1
            if self.bench.cycle - start > timeout:
                raise AssertionError(f"not quiet after {timeout} cycles: "
                                     f"{self.bench.accepted} accepted, {self.bench.responded} "
                                     f"answered, {len(self.bench.requests)} not sent")
            await RisingEdge(self.dut.clk)

    async def _run(self) -> None:
        bench, clk = self.bench, self.dut.clk
        edge, settle = RisingEdge(clk), ReadOnly()
        outputs, inputs, written = self.outputs, self.inputs, self._written
        while True:
            for name, value in bench.drive().items():
                if written[name] != value:
                    inputs[name].value = value
                    written[name] = value
            await settle
            sampled = {}
            for name, handle in outputs.items():
                valid = self.valid_of.get(name)
                if valid is not None and not sampled[valid]:
                    sampled[name] = 0
                    continue
                try:
                    sampled[name] = int(handle.value)
                except ValueError:
                    raise AssertionError(f"cycle {bench.cycle}: {name} is {handle.value} "
                                         f"(X/Z)") from None
            await edge
            bench.edge(sampled)
            if len(bench.requests) < self.depth:
                self._space.set()


# ---------------------------------------------------------------- transactions
@dataclass(frozen=True)
class RouterEvent:
    """One event of the GoldenRouter protocol: ``kind`` names the model method."""
    kind: str
    cycle: int
    args: tuple


class RequestItem(uvm_sequence_item):
    def __init__(self, req: RouterRequest):
        super().__init__(f"req_vf{req.vf}_tag{req.tag}")
        self.req = req


class ControlItem(uvm_sequence_item):
    def __init__(self, cycle: int, cmd: RouterCommand):
        super().__init__(f"{cmd.op.name}_vf{cmd.vf}@{cycle}")
        self.cycle, self.cmd = cycle, cmd


class TrafficSeq(uvm_sequence):
    """``count`` random requests from a ``Traffic`` generator."""

    def __init__(self, name: str, traffic: Traffic, count: int):
        super().__init__(name)
        self.traffic, self.count = traffic, count

    async def body(self):
        for _ in range(self.count):
            item = RequestItem(self.traffic.request())
            await self.start_item(item)
            await self.finish_item(item)


class BoundedTrafficSeq(uvm_sequence):
    """``count`` random requests; a VF for which ``allowed(vf)`` is False is replaced by
    one of ``fallback`` (closed loop: e.g. keep a held VF's queue from filling)."""

    def __init__(self, name: str, traffic: Traffic, count: int, allowed, fallback: list[int]):
        super().__init__(name)
        self.traffic, self.count = traffic, count
        self.allowed, self.fallback = allowed, fallback

    async def body(self):
        traffic = self.traffic
        for _ in range(self.count):
            vf = traffic.pick_vf()
            if not self.allowed(vf):
                vf = traffic.rng.choice(self.fallback)
            item = RequestItem(traffic.request(vf))
            await self.start_item(item)
            await self.finish_item(item)


class RequestListSeq(ItemListSeq):
    """A fixed list of ``RouterRequest``s."""
    ITEM = RequestItem


class ScheduleSeq(ItemListSeq):
    """Table commands ``(cycle, RouterCommand)``, each offered from its cycle on (sorted by
    cycle)."""

    def item(self, element):
        return ControlItem(*element)


# ---------------------------------------------------------------- components
class RequestDriver(BfmDriver):
    async def drive(self, item):
        await self.bfm.send(item.req)


class ControlDriver(BfmDriver):
    """Queues each command for its cycle; the bench offers it on ``ctl`` from then on."""

    async def drive(self, item):
        self.bfm.bench.commands.append((item.cycle, item.cmd))


class RequestAgent(SequencedAgent):
    DRIVER = RequestDriver


class ControlAgent(SequencedAgent):
    DRIVER = ControlDriver


class RouterMonitor(uvm_monitor):
    """The bench's event sink: every accept, dispatch, device response, response and
    command, published in edge order on ``event_ap``."""

    def build_phase(self):
        self.bfm = ConfigDB().get(self, "", "BFM")
        self.event_ap = uvm_analysis_port("event_ap", self)

    def connect_phase(self):
        self.bfm.bench.model = self

    def _publish(self, kind: str, cycle: int, *args) -> None:
        self.event_ap.write(RouterEvent(kind, cycle, args))

    def accept(self, cycle, req):
        self._publish("accept", cycle, req)

    def dispatch(self, cycle, *args):
        self._publish("dispatch", cycle, *args)

    def device_response(self, cycle, *args):
        self._publish("device_response", cycle, *args)

    def response(self, cycle, resp):
        self._publish("response", cycle, resp)

    def control(self, cycle, cmd):
        self._publish("control", cycle, cmd)


class RouterScoreboard(uvm_scoreboard):
    """GoldenRouter fed by the monitor; per-VF order, no loss, no duplicate, right VF."""

    def build_phase(self):
        cfg: RouterConfig = ConfigDB().get(self, "", "CONFIG")
        self.bfm = ConfigDB().get(self, "", "BFM")
        self.model = GoldenRouter(cfg.n_vfs, cfg.slots_per_device, cfg.tag_bits)
        self.event_export = uvm_subscriber.uvm_AnalysisImp("event_export", self, self.write)
        self.totals = None

    def write(self, event: RouterEvent) -> None:
        getattr(self.model, event.kind)(event.cycle, *event.args)

    def check_phase(self):
        self.totals = self.model.finish()
        problems = self.model.messages + self.bfm.bench.final_checks(self.totals)
        for text in problems[:20]:
            self.logger.error(text)
        self.logger.info("scoreboard: %s", self.totals.to_dict())
        assert not problems and self.totals.mismatches == 0, (
            f"router scoreboard: {self.totals.mismatches} mismatches, {self.totals.lost} "
            f"lost; first: {problems[:3]}")


class RouterCoverage(PlannedCoverage, uvm_subscriber):
    """Planned bins (``PLANNED``); a test lists the bins it must hit in ConfigDB
    ``COVERAGE``, and ``report_phase`` fails when one of them was never hit."""

    COVERGROUP = "router"
    PLANNED = ("unknown_vf_error", "unplaced_vf_error", "request_while_held",
               "release_relocated", "release_in_place", "two_held_at_once",
               "three_held_at_once", "queue_full_backpressure", "refused_command",
               "device_error_passed", "hold_of_vf_in_flight")

    def build_phase(self):
        self.cfg: RouterConfig = ConfigDB().get(self, "", "CONFIG")
        self.bfm = ConfigDB().get(self, "", "BFM")
        self.init_bins()
        self.table = RouterTable(self.cfg.n_vfs, self.cfg.slots_per_device)
        self.dispatched: Counter = Counter()   # per VF: dispatched, device not answered

    def write(self, event: RouterEvent) -> None:
        kind, args = event.kind, event.args
        if kind == "accept":
            self.hits["request_while_held"] += self.table.held(args[0].vf)
        elif kind == "dispatch":
            self.dispatched[args[2]] += 1
        elif kind == "device_response":
            self.dispatched[args[1]] -= 1
        elif kind == "response":
            resp = args[0]
            if resp.error and resp.data == 0 and resp.vf >= self.cfg.n_vfs:
                self.hits["unknown_vf_error"] += 1
            elif resp.error and resp.data == 0:
                self.hits["unplaced_vf_error"] += 1   # (a device answer of 0 is negligible)
            elif resp.error:
                self.hits["device_error_passed"] += 1
        elif kind == "control":
            cmd, table = args[0], self.table
            was_held, was_at = table.held(cmd.vf), table.location(cmd.vf)
            if not table.apply(cmd):
                self.hits["refused_command"] += 1
            elif cmd.op == RouterOp.HOLD and not was_held:
                self.hits["hold_of_vf_in_flight"] += self.dispatched[cmd.vf] > 0
                held = sum(table.held(v) for v in range(self.cfg.n_vfs))
                self.hits["two_held_at_once"] += held >= 2
                self.hits["three_held_at_once"] += held >= 3
            elif cmd.op == RouterOp.RELEASE and was_held:
                moved = was_at != (cmd.device, cmd.slot)
                self.hits["release_relocated" if moved else "release_in_place"] += 1

    def report_phase(self):
        self.hits["queue_full_backpressure"] += self.bfm.bench.flow.queue_full_stalls
        super().report_phase()


class RouterEnv(uvm_env):
    def build_phase(self):
        self.requests = RequestAgent("requests", self)
        self.control = ControlAgent("control", self)
        self.monitor = RouterMonitor("monitor", self)
        self.scoreboard = RouterScoreboard("scoreboard", self)
        self.coverage = RouterCoverage("coverage", self)

    def connect_phase(self):
        self.monitor.event_ap.connect(self.scoreboard.event_export)
        self.monitor.event_ap.connect(self.coverage.analysis_export)


# ---------------------------------------------------------------- tests
class RouterTestBase(uvm_test):
    """Reset, place every VF, run ``stimulus()``, release everything, wait until quiet.

    Subclasses override ``devices()``, ``bench_knobs()``, ``coverage()`` and
    ``stimulus()``."""

    timeout_cycles = 40_000   # the whole scenario
    span = 1500   # cycles over which a stimulus spreads its table commands

    def build_phase(self):
        self.cfg = RouterConfig.from_env()
        rng_seed, bench_seed_ = generator_seeds(self.logger, 2, f"{type(self).__name__}, "
                                                                f"config {self.cfg}")
        self.rng = random.Random(rng_seed)
        self.dut = cocotb.top
        bench = RouterBench(self.cfg, bench_seed_, devices=self.devices(),
                            **self.bench_knobs())
        self.bfm = RouterBfm(self.dut, bench)
        ConfigDB().set(None, "*", "BFM", self.bfm)
        ConfigDB().set(None, "*", "CONFIG", self.cfg)
        ConfigDB().set(None, "*", "COVERAGE", self.coverage())
        self.env = RouterEnv("env", self)

    def devices(self) -> list[DeviceParams]:
        # Device 0 slow (a host), the others fast, all with some backpressure.
        return [DeviceParams(latency=8, capacity=2, backpressure=0.3)] + [
            DeviceParams(latency=2, capacity=2, backpressure=0.2)] * (self.cfg.n_devices - 1)

    def bench_knobs(self) -> dict:
        return {"idle_prob": 0.2, "resp_backpressure": 0.2}

    def coverage(self) -> tuple[str, ...]:
        return ()

    async def stimulus(self, end_cycle: int) -> None:
        raise NotImplementedError

    async def run_phase(self):
        # A router that loses a release would leave the stimulus waiting forever: the whole
        # scenario runs under a cycle budget and a failure ends it (reported in check_phase).
        self.raise_objection()
        self.failure = ""
        try:
            await with_timeout(self.scenario(), self.timeout_cycles * CLOCK_NS, "ns")
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            self.logger.error("scenario stopped at cycle %d: %s", self.bfm.bench.cycle,
                              self.failure)
        self.drop_objection()

    def check_phase(self):
        assert not self.failure, self.failure

    async def scenario(self):
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        await self.bfm.reset()
        self.bfm.start()
        env = self.env
        await ScheduleSeq("place", [(0, c) for c in placement_commands(self.cfg)]).start(
            env.control.seqr)
        await self.bfm.commands_applied()
        await self.stimulus(self.span)
        # Whatever the stimulus did, release every VF so every queue drains.
        last = max([c for c, _ in self.bfm.bench.commands] + [self.bfm.bench.cycle])
        await ScheduleSeq("release_all", release_all(self.cfg, last + 1)).start(
            env.control.seqr)
        await self.bfm.quiet(self.timeout_cycles)
        self.logger.info("flow: %s", self.bfm.bench.flow.report())


@pyuvm.test()
class RandomTraffic(RouterTestBase):
    """Random requests on every VF (unknown ids too) with device and response
    backpressure, overlapping holds with relocations and aborts on half the VFs, random
    PLACE/UNPLACE and refused commands on the others: the scoreboard proves per-VF order,
    no loss, no duplicate, right VF, right device data, legal router errors."""

    def coverage(self):
        return ("unknown_vf_error", "unplaced_vf_error", "request_while_held",
                "release_relocated", "two_held_at_once", "device_error_passed",
                "queue_full_backpressure", "refused_command")

    async def stimulus(self, end_cycle):
        cfg, rng = self.cfg, self.rng
        held = rng.sample(range(cfg.n_vfs), cfg.n_vfs // 2)
        others = [v for v in range(cfg.n_vfs) if v not in held]
        schedule = merge_schedules(
            hold_windows(cfg, rng, held, 30, end_cycle, holds_per_vf=3, max_len=300),
            table_churn(cfg, rng, others, 30, end_cycle, 20))
        control = cocotb.start_soon(ScheduleSeq("holds", schedule).start(
            self.env.control.seqr))
        await TrafficSeq("traffic", Traffic(cfg, rng), 1200).start(self.env.requests.seqr)
        await control


@pyuvm.test()
class OverlappingHolds(RouterTestBase):
    """Most VFs held and released in overlapping windows (several held at once, moved to
    new locations or back) while two VFs are never held: measures that the free VFs keep
    flowing during holds (their dispatch rate during holds against outside them) and that
    every long hold window saw free traffic; the scoreboard checks everything else."""

    def coverage(self):
        return ("request_while_held", "release_relocated", "release_in_place",
                "three_held_at_once")

    def bench_knobs(self):
        return {"idle_prob": 0.1, "resp_backpressure": 0.1}

    def devices(self):
        # Fast devices: the free VFs' rate is set by their traffic, not by a slow device.
        return [DeviceParams(latency=3, capacity=3, backpressure=0.1)] * self.cfg.n_devices

    async def stimulus(self, end_cycle):
        cfg, rng = self.cfg, self.rng
        free = [0, cfg.n_vfs - 1]
        held = [v for v in range(cfg.n_vfs) if v not in free]
        # Held VFs send rarely, and never more than their queue holds (a full queue stalls
        # `req` for everyone: documented backpressure, not what this test measures).
        weights = [1.0 if v in free else 0.05 for v in range(cfg.n_vfs)]
        traffic = Traffic(cfg, rng, unknown_prob=0.0, weights=weights)
        bench, model = self.bfm.bench, self.env.scoreboard.model

        def allowed(vf: int) -> bool:
            waiting = model.undispatched(vf) + bench.not_accepted(vf)
            return vf in free or waiting < max(1, cfg.queue_depth - 1)

        # Relocations go to locations the free VFs do not use (a quiesced slot refuses
        # every VF placed in it, which a real system never shares).
        where = {c.vf: (c.device, c.slot) for c in placement_commands(cfg)}
        spare = [(d, s) for d, slots in enumerate(cfg.slots_per_device) for s in range(slots)
                 if (d, s) not in {where[v] for v in free}]
        schedule = []
        stagger, length = 25, 25 * len(held) + 60
        for start in range(40, end_cycle - length, length + 100):
            for k, vf in enumerate(rng.sample(held, len(held))):
                begin = start + k * stagger
                if k % 3:   # move; every third VF is released where it was (an abort)
                    where[vf] = rng.choice(spare)
                schedule += [(begin, RouterCommand(RouterOp.HOLD, vf)),
                             (begin + length, RouterCommand(RouterOp.RELEASE, vf,
                                                            *where[vf]))]
        schedule.sort(key=lambda e: e[0])
        control = cocotb.start_soon(ScheduleSeq("holds", schedule).start(
            self.env.control.seqr))
        await BoundedTrafficSeq("traffic", traffic, 1200, allowed, free).start(
            self.env.requests.seqr)
        await control

    def check_phase(self):
        super().check_phase()
        flow = self.bfm.bench.flow
        outside_cycles = flow.cycles - flow.held_cycles
        outside = flow.dispatches - flow.free_dispatches_while_held
        # Dispatches of held VFs happen only after their release: all count as outside.
        rate_held = flow.free_dispatches_while_held / max(1, flow.held_cycles)
        rate_outside = outside / max(1, outside_cycles)
        starved = [w for w in flow.windows if w["end"] - w["start"] >= 40 and w["others"] == 0]
        self.logger.info("free-VF dispatch rate: %.3f/cycle while some VF is held (%d cycles), "
                         "%.3f/cycle otherwise; %d hold windows, up to %d VFs held at once",
                         rate_held, flow.held_cycles, rate_outside, len(flow.windows),
                         flow.max_held_at_once)
        assert flow.max_held_at_once >= 3, flow.report()
        assert not starved, f"hold windows in which no other VF was dispatched: {starved}"
        assert rate_held >= 0.5 * rate_outside, (
            f"free VFs slowed down by holds: {rate_held:.3f} vs {rate_outside:.3f}/cycle")


@pyuvm.test()
class UnknownAndUnplaced(RouterTestBase):
    """Requests to unknown VF ids and to a VF that is not placed, mixed with normal ones:
    each gets exactly one error response (counted independently here), never a hang; the
    VF placed later serves normally, and unplacing it again makes it answer errors."""

    def coverage(self):
        return ("unknown_vf_error", "unplaced_vf_error", "refused_command")

    async def stimulus(self, end_cycle):
        cfg, rng = self.cfg, self.rng
        traffic = Traffic(cfg, rng, unknown_prob=0.0)
        victim = cfg.n_vfs - 1
        env = self.env
        await ScheduleSeq("unplace", [(0, RouterCommand(RouterOp.UNPLACE, victim)),
                                      (0, RouterCommand(RouterOp.HOLD, cfg.n_vfs))]).start(
            env.control.seqr)
        await self.bfm.commands_applied()
        expected_errors = 0
        phase1 = []
        for _ in range(150):
            kind = rng.random()
            if kind < 0.2 and (1 << cfg.vf_bits) > cfg.n_vfs:
                phase1.append(traffic.request(rng.randrange(cfg.n_vfs, 1 << cfg.vf_bits)))
                expected_errors += 1
            elif kind < 0.4:
                phase1.append(traffic.request(victim))
                expected_errors += 1
            else:
                phase1.append(traffic.request(rng.randrange(cfg.n_vfs - 1)))
        await RequestListSeq("errors", phase1).start(env.requests.seqr)
        await self.bfm.quiet(5000)
        totals = env.scoreboard.model.totals
        assert totals.router_errors == expected_errors, (totals.router_errors, expected_errors)
        assert totals.responses == 150
        await ScheduleSeq("place", [(self.bfm.bench.cycle,
                                     RouterCommand(RouterOp.PLACE, victim, 0, 0))]).start(
            env.control.seqr)
        await self.bfm.commands_applied()
        await RequestListSeq("placed", [traffic.request(victim) for _ in range(20)]).start(
            env.requests.seqr)
        await self.bfm.quiet(5000)
        assert totals.router_errors == expected_errors, "a placed VF got router errors"


@pyuvm.test()
class QueueFullBackpressure(RouterTestBase):
    """A held VF gets several times its queue depth of requests: ``req`` stalls while its
    queue is full (documented head-of-line backpressure), nothing is dropped, and after
    RELEASE at another device every request arrives there in order."""

    def coverage(self):
        return ("request_while_held", "queue_full_backpressure", "release_relocated")

    async def stimulus(self, end_cycle):
        cfg, rng, env = self.cfg, self.rng, self.env
        traffic = Traffic(cfg, rng, unknown_prob=0.0)
        await ScheduleSeq("hold", [(0, RouterCommand(RouterOp.HOLD, 1))]).start(
            env.control.seqr)
        await self.bfm.commands_applied()
        release = RouterCommand(RouterOp.RELEASE, 1, cfg.n_devices - 1, 0)
        await ScheduleSeq("release", [(self.bfm.bench.cycle + 600, release)]).start(
            env.control.seqr)
        reqs = [traffic.request(1 if i % 2 else rng.choice([0, 2])) for i in range(
            8 * cfg.queue_depth)]
        await RequestListSeq("burst", reqs).start(env.requests.seqr)

    def check_phase(self):
        super().check_phase()
        assert self.bfm.bench.flow.queue_full_stalls > 100, self.bfm.bench.flow.report()


@pyuvm.test()
class HoldWithRequestsInside(RouterTestBase):
    """VF 1 is held while requests of it are inside a slow device, then released at
    another device: those responses still reach VF 1 (the VF id rides in the device tag),
    before any response of its queued requests (in-flight rule), while VF 0 on the same
    slow device and the other VFs keep flowing."""

    def coverage(self):
        return ("hold_of_vf_in_flight", "request_while_held", "release_relocated")

    def devices(self):
        return [DeviceParams(latency=40, capacity=4, backpressure=0.0)] + [
            DeviceParams(latency=2, capacity=2, backpressure=0.1)] * (self.cfg.n_devices - 1)

    async def stimulus(self, end_cycle):
        cfg, rng, env, bench = self.cfg, self.rng, self.env, self.bfm.bench
        traffic = Traffic(cfg, rng, unknown_prob=0.0)
        coverage = env.coverage
        for round_ in range(3):
            # As many as may be in flight at once, so they all go inside the device.
            inside = [traffic.request(1) for _ in range(min(3, cfg.max_in_flight))]
            await RequestListSeq(f"inside_{round_}", inside).start(env.requests.seqr)
            while coverage.dispatched[1] == 0:
                await RisingEdge(self.dut.clk)
            now = bench.cycle
            target = (cfg.n_devices - 1, round_ % cfg.slots_per_device[-1])
            back = (0, 1)
            await ScheduleSeq(f"hold_{round_}", [
                (now, RouterCommand(RouterOp.HOLD, 1)),
                (now + 120, RouterCommand(RouterOp.RELEASE, 1, *target)),
                (now + 300, RouterCommand(RouterOp.PLACE, 1, *back))]).start(env.control.seqr)
            mixed = [traffic.request(rng.choice([0, 1, 1, 2])) for _ in range(
                4 * cfg.queue_depth)]
            await RequestListSeq(f"mixed_{round_}", mixed).start(env.requests.seqr)
            await self.bfm.quiet(5000)


# ---------------------------------------------------------------- pytest entry
# pytest entry of the router's cocotb/pyuvm bench (tb/router): every configuration on every
# installed simulator. ``VFMIG_SEED`` picks the seed (logged by every cocotb test).

@bench_matrix(CONFIGS)
def test_router(sim: str, config: str) -> None:
    CONFIGS[config].run_bench(sim, f"router_{config}", __name__, seed=bench_seed(20240613))
