"""cocotb/pyuvm tests of the full system (hdl/system.py): VMs keep running while VFs migrate.

``SystemScenario``: reset, check the identification registers, program every VF's MSI-X
table, start random traffic on all VFs (one write-heavy), run the migration plan through
the VMM (live pre-copy moves in both directions, an abort after a dirty round, a stop-copy
only move with an illegal request in the middle, an illegal request on a running VF), stop
the traffic, wait for every response, read every image back and compare it with the golden
model, and write the JSON report.  Knobs come from ``VFMIG_*`` environment variables
(``tb.system.env.Knobs``); the seed is logged and alone reproduces a run.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import cocotb
import pyuvm
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer
from pyuvm import ConfigDB, uvm_test

from model.config import Device, SystemConfig
from model.irq_remap import FaultReason, RemapEntry
from model.regmap import GLOBAL, ID_VALUE, vf_reg
from model.state import Op
from model.vfio import DeviceState
from tb.common.axil import AxilResp
from tb.common.coverage import flush

from .closed_loop import ClosedLoop, make_rtl_policy, make_source, parse_params
from .coverage import sample_report
from .env import (
    Knobs,
    RandomTrafficSeq,
    RequestListSeq,
    SystemEnv,
    VmBfm,
    config_from_dict,
    link_summary,
)
from .link import SystemLink
from .traffic import TrafficGenerator, irte_entry
from .vmm import (
    CLOCK_NS,
    check_plan,
    default_plan,
    format_plan,
    heavy_vfs,
    parse_plan,
    plan_groups,
)


class Progress:
    """One line per scenario event: to the log and, for the CLI, appended to a file."""

    def __init__(self, logger, path: str):
        self.logger, self.path = logger, path
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, text: str) -> None:
        self.logger.info(text)
        if self.path:
            with open(self.path, "a") as f:
                f.write(text + "\n")


class SystemTestBase(uvm_test):
    def build_phase(self):
        self.knobs = Knobs.from_env()
        raw = os.environ.get("VFMIG_CONFIG")
        self.config = config_from_dict(json.loads(raw)) if raw else SystemConfig()
        self.dut = cocotb.top
        self.rng = random.Random(self.knobs.seed)
        self.progress = Progress(self.logger, self.knobs.progress)
        self.logger.info("seed %d, config %s", self.knobs.seed, self.config.to_dict())
        self.bfm = VmBfm(self.dut, self.config, random.Random(self.rng.getrandbits(32)),
                         self.knobs.idle_prob, self.knobs.resp_backpressure,
                         self.knobs.irq_backpressure)
        ConfigDB().set(None, "*", "DUT", self.dut)
        ConfigDB().set(None, "*", "CONFIG", self.config)
        ConfigDB().set(None, "*", "BFM", self.bfm)
        ConfigDB().set(None, "*", "PROGRESS", self.progress)
        self.env = SystemEnv("env", self)
        self.failure = ""
        self.steps = []
        self.wall_start = time.monotonic()

    def end_of_elaboration_phase(self):
        self.seqr = self.env.traffic.seqr
        self.vmm = self.env.vmm_agent.vmm
        self.sb = self.env.scoreboard.model
        self.irq_check = self.vmm.irq_check = self.env.scoreboard.irq_check
        self.irq_hw: dict[str, int] | None = None
        self.link_hw: dict[str, dict[str, int]] | None = None
        self.link: SystemLink | None = None
        self.vmm.allow_rollback = bool(self.knobs.allow_rollback)
        self.spoof_attempts = 0

    async def cycles(self, n: int) -> None:
        if n > 1:
            await Timer((n - 1) * CLOCK_NS, "ns")
        await RisingEdge(self.dut.clk)

    async def drain(self, what: str, timeout: int = 50_000) -> None:
        """Wait until every queued request was accepted and answered."""
        waited = 0
        while self.bfm.queued or self.sb.outstanding():
            if waited >= timeout:
                raise AssertionError(
                    f"{what}: after {waited} cycles {self.bfm.queued} requests still not "
                    f"accepted and {self.sb.outstanding()} unanswered "
                    f"(per VF {[self.sb.outstanding(v) for v in range(self.config.n_vfs)]})")
            await self.cycles(32)
            waited += 32


@pyuvm.test()
class SystemScenario(SystemTestBase):
    """The `make sim` scenario (and its short pytest variants)."""

    async def run_phase(self):
        self.raise_objection()
        self.traffic = None
        try:
            await self.scenario()
        except Exception as exc:  # reported, and failed in report_phase
            self.failure = f"{type(exc).__name__}: {exc}"
            self.logger.exception("scenario stopped: %s", self.failure)
            # Let what is in flight come back, so "lost" counts only real losses.
            if self.traffic:
                self.traffic.stop()
            try:
                await self.drain("after the failure", timeout=5_000)
            except AssertionError as drain_exc:
                self.logger.error("%s", drain_exc)
        self.drop_objection()

    def plan(self):
        knobs, config = self.knobs, self.config
        if knobs.plan:
            steps = parse_plan(knobs.plan)
        else:
            steps = default_plan(config, None if knobs.migrations < 0 else knobs.migrations,
                                 random.Random(knobs.seed))  # as tb.system.sim does
        check_plan(steps, config)
        return steps

    async def start(self):
        """Clock, the link's wires (closed here, faulty or not, seeded from the scenario
        seed), reset, the BFM and the identification checks."""
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        self.link = SystemLink(self.dut, self.knobs.link_faults(), seed=self.knobs.seed,
                               log=self.logger)
        self.link.start()
        await self.bfm.reset()
        self.bfm.start()
        await self.check_identity()

    async def finish(self, gen: TrafficGenerator):
        """Read every image back, check where the VFs run, collect the remapper's fault
        records and counters and the link's counters."""
        config = self.config
        for vf in range(config.n_vfs):
            await RequestListSeq(f"readback_{vf}", gen.readback(vf)).start(self.seqr)
        await self.drain("image read-back")
        await self.check_final_states()
        await self.cycles(200)  # interrupts still pending somewhere come out
        left = await self.vmm.pop_faults()
        self.vmm.expect(not left, f"fault records after the spoof phase: {left}")
        self.irq_hw = await self.vmm.irq_counters()
        self.link_hw = await self.vmm.link_counters()

    async def scenario(self):
        knobs, config = self.knobs, self.config
        await self.start()
        steps = self.steps = self.plan()
        heavy = (tuple(int(v) for v in knobs.heavy_vfs.split(",")) if knobs.heavy_vfs
                 else heavy_vfs(config))
        storm = tuple(int(v) for v in knobs.storm_vfs.split(",")) if knobs.storm_vfs else ()
        gen = TrafficGenerator(config.layout, config.n_vfs, config.tag_bits,
                               random.Random(self.rng.getrandbits(32)), heavy_vfs=heavy,
                               error_prob=knobs.error_prob, storm_vfs=storm,
                               unknown_vf_prob=knobs.unknown_vf_prob)
        self.progress(f"scenario: {config.n_vfs} VFs, seed {knobs.seed}, write-heavy VF(s) "
                      f"{list(heavy)}, plan {format_plan(steps)}")
        await RequestListSeq("msix_init", gen.msix_init()).start(self.seqr)
        await self.drain("MSI-X programming")
        await self.vmm.program_irtes()
        await self.spoof(gen)
        traffic = self.traffic = RandomTrafficSeq("traffic", gen)
        traffic_task = cocotb.start_soon(traffic.start(self.seqr))
        await self.cycles(knobs.warmup_cycles)
        number = {id(step): i for i, step in enumerate(steps)}
        downs = knobs.step_link_downs()
        commit_downs = knobs.step_link_downs(commit=True)

        def before_commit(step):
            cycles = commit_downs.get(number.get(id(step)))
            if cycles:
                self.progress(f"link down for {cycles} cycles as step {number[id(step)]} "
                              f"({step}) commits")
                self.link.link_down(cycles)
        self.vmm.before_commit = before_commit
        for group in plan_groups(steps):
            for step in group:
                if number[id(step)] in downs:
                    self.progress(f"link down for {downs[number[id(step)]]} cycles as step "
                                  f"{number[id(step)]} ({step}) starts")
                    self.link.link_down(downs[number[id(step)]])
            for task in [cocotb.start_soon(self.run_step(step)) for step in group]:
                await task
            await self.cycles(knobs.gap_cycles)
        traffic.stop()
        await traffic_task
        await self.drain("traffic")
        self.progress(f"traffic stopped after {self.sb.totals.requests} requests; "
                      f"reading back {config.n_vfs} images")
        await self.finish(gen)

    async def run_step(self, step) -> None:
        masked = self.knobs.irte_mask and step.mode != "invalid"
        if masked:  # vector 0's interrupts go pending at the remapper across the switchover
            await self.set_irte_mask(step.vf, True)
        await self.vmm.run(step)
        if masked:
            await self.set_irte_mask(step.vf, False)

    async def set_irte_mask(self, vf: int, mask: bool) -> None:
        loc = await self.vmm.location(vf)
        for vector in (0,):
            await self.vmm.write_irte(vf, vector,
                                      irte_entry(vf, vector, loc.device, loc.slot, mask=mask))

    async def spoof(self, gen: TrafficGenerator) -> None:
        """Isolation: the last VF raises VF 0's entry (twice) and its own entry while the VMM
        has it not present; each must be blocked, counted and recorded."""
        vmm, config = self.vmm, self.config
        spoofer, victim = config.n_vfs - 1, 0
        raised = (await vmm.irq_counters())["raised_count"]
        await RequestListSeq("spoof", gen.spoof(spoofer, 0, victim, times=2)).start(self.seqr)
        await self.drain("spoof")
        absent = 1 % config.layout.msix_vectors
        await vmm.write_irte(spoofer, absent, RemapEntry())
        notify = [gen.request(spoofer, Op.NOTIFY, 0, absent, "init")]
        await RequestListSeq("absent", notify).start(self.seqr)
        await self.drain("raise of a not-present entry")
        await self.wait_raised(raised + 3)
        loc = await vmm.location(spoofer)
        await vmm.write_irte(spoofer, absent, irte_entry(spoofer, absent, loc.device, loc.slot))
        self.spoof_attempts = 3
        # present again: the same vector is delivered
        again = [gen.request(spoofer, Op.NOTIFY, 0, absent, "init")]
        await RequestListSeq("present", again).start(self.seqr)
        await self.drain("raise of the entry present again")
        records = await vmm.pop_faults()
        want = ([{"reason": FaultReason.SOURCE_MISMATCH, "source_device": 0,
                  "source_slot": spoofer, "vf": victim, "vector": 0}] * 2
                + [{"reason": FaultReason.NOT_PRESENT, "source_device": 0,
                    "source_slot": spoofer, "vf": spoofer, "vector": absent}])
        vmm.expect(records == want, f"fault records {records}, expected {want}")
        self.progress(f"spoof: VF {spoofer} raised VF {victim}'s entry twice and a not-present "
                      f"entry once: {len(records)} fault records")

    async def wait_raised(self, count: int, timeout: int = 5_000) -> None:
        waited = 0
        while (await self.vmm.irq_counters())["raised_count"] < count:
            if waited >= timeout:
                raise AssertionError(f"IRQ_RAISED did not reach {count} in {timeout} cycles")
            await self.cycles(16)
            waited += 16

    async def check_identity(self):
        bus, config = self.vmm.bus, self.config
        ident = await bus.read(GLOBAL["ID"])
        self.vmm.expect(ident == ID_VALUE, f"ID reads 0x{ident:08x}, expected 0x{ID_VALUE:08x}")
        words = await bus.read(GLOBAL["IMAGE_WORDS"])
        self.vmm.expect(words == config.layout.image_words,
                        f"IMAGE_WORDS reads {words}, expected {config.layout.image_words}")
        # the control plane refuses what is not a register, without side effects
        for addr, want in ((0x0FC, AxilResp.DECERR), (GLOBAL["ID"] + 2, AxilResp.SLVERR),
                           (vf_reg(config.n_vfs - 1, "MIGRATIONS") + 4, AxilResp.DECERR)):
            data, resp = await bus.master.read(addr)
            self.vmm.expect(resp == want and data == 0, f"AXI read of {addr:#06x} answered "
                                                        f"{resp.name} data {data:#x}, expected "
                                                        f"{want.name} and 0")
        caps = await bus.read(GLOBAL["CAPS"])
        want = (int(config.flags) | config.n_vfs << 8 | (config.host_slots & 0xFF) << 16
                | (config.offload_slots & 0xFF) << 24)
        self.vmm.expect(caps == want, f"CAPS reads 0x{caps:08x}, expected 0x{want:08x}")
        for vf in range(config.n_vfs):
            state = await self.vmm.device_state(vf)
            loc = await self.vmm.location(vf)
            self.vmm.expect(state == DeviceState.RUNNING and loc.device == 0 and loc.slot == vf,
                            f"VF {vf} after reset: {state!r} at {loc}, expected RUNNING in "
                            f"host slot {vf}")

    async def check_final_states(self):
        """Every VF RUNNING where its committed migrations put it."""
        where = [Device.HOST] * self.config.n_vfs
        for rec in self.vmm.records:
            if rec.result == "committed":
                where[rec.vf] = rec.target
        for vf in range(self.config.n_vfs):
            state = await self.vmm.device_state(vf)
            loc = await self.vmm.location(vf)
            self.vmm.expect(state == DeviceState.RUNNING and loc.device == where[vf],
                            f"VF {vf} ends {state!r} on {loc.device.label}, expected RUNNING "
                            f"on {where[vf].label}")

    def extra_report(self) -> dict:
        """More sections for report.json (the closed loop adds its own)."""
        return {}

    def irq_problems(self, irq, totals) -> list[str]:
        """The interrupt guarantees of issue 3, as problems when they do not hold."""
        out = []
        if self.irq_hw is None:
            out.append("the remapper counters were never read (the scenario stopped early)")
        if irq.irq_check_errors:
            out.append(f"remapper check: {irq.irq_check_errors} errors")
        if irq.interrupts_duplicated or irq.interrupts_lost:
            out.append(f"interrupts: {irq.interrupts_duplicated} duplicated, "
                       f"{irq.interrupts_lost} lost")
        if irq.interrupts_delivered + irq.interrupts_blocked != irq.interrupts_raised:
            out.append(f"interrupts: {irq.interrupts_delivered} delivered + "
                       f"{irq.interrupts_blocked} blocked != {irq.interrupts_raised} raised")
        if irq.interrupts_blocked != self.spoof_attempts:
            out.append(f"interrupts: {irq.interrupts_blocked} blocked, but "
                       f"{self.spoof_attempts} spoof attempts were made")
        if totals.irq_spoofed != irq.interrupts_spoofed:
            out.append(f"VMs sent {totals.irq_spoofed} interrupts naming another VF's entry, "
                       f"the remapper saw {irq.interrupts_spoofed}")
        return out

    def report_phase(self):
        sb, vmm, knobs, config = self.sb, self.vmm, self.knobs, self.config
        totals = sb.finish()
        irq = self.irq_check.finish(self.irq_hw)
        migrations = [r.report() for r in vmm.records]
        problems = list(vmm.problems) + ([self.failure] if self.failure else [])
        problems += self.irq_problems(irq, totals)
        link = link_summary(self.link_hw) if self.link_hw else None
        if self.link_hw is None:
            problems.append("the link counters were never read (the scenario stopped early)")
        else:
            overflows = sum(port["rx_overflows"] for port in self.link_hw.values())
            if overflows:
                problems.append(f"link: {overflows} receive-buffer overflows (credit "
                                f"violations)")
        passed = sb.ok() and not problems
        report = {
            "config": {**config.to_dict(), "seed": knobs.seed, "sim": knobs.sim},
            "plan": format_plan(self.steps),
            "migrations": migrations,
            "totals": {**totals.to_dict(), **asdict(irq), "spoof_attempts": self.spoof_attempts,
                       "vmm_problems": len(problems)},
            "interrupts": sb.irq_summary(),
            "link": link,
            "link_ports": self.link_hw,
            "link_faults": {"config": {k: getattr(knobs, k) for k in (
                                "ber", "burst_rate", "drop_rate", "dup_rate", "delay_rate",
                                "link_down", "link_down_step", "link_down_commit")},
                            "injected": self.link.injected() if self.link else None},
            "cycles": self.bfm.cycles,
            "request_stall_cycles": self.bfm.stall_cycles,
            "wall_seconds": round(time.monotonic() - self.wall_start, 1),
            "passed": passed,
            "problems": problems + sb.messages + self.irq_check.messages,
            **self.extra_report(),
        }
        sample_report(report, knobs)   # functional coverage (tb/system/coverage.py)
        flush()
        if knobs.report:
            Path(knobs.report).parent.mkdir(parents=True, exist_ok=True)
            Path(knobs.report).write_text(json.dumps(report, indent=2) + "\n")
        self.progress(f"done: {self.bfm.cycles} cycles, {totals.requests} requests, "
                      f"{totals.responses_checked} responses checked, {totals.mismatches} "
                      f"mismatches, {totals.lost} lost, {len(problems)} VMM problems; "
                      f"link {link}")
        for text in problems:
            self.logger.error(text)
        assert passed, (f"system scenario failed (seed {knobs.seed}): "
                        f"{(problems + sb.messages)[:5]}")



@pyuvm.test()
class ClosedLoopScenario(SystemScenario):
    """`make sim`'s default: the RTL system under a workload, VFs placed by a policy from
    the hardware profiler's windows (tb/system/closed_loop.py)."""

    async def scenario(self):
        knobs, config = self.knobs, self.config
        await self.start()
        gen = TrafficGenerator(config.layout, config.n_vfs, config.tag_bits,
                               random.Random(self.rng.getrandbits(32)), error_prob=0.0)
        policy_name, policy = make_rtl_policy(knobs.policy, config, knobs.window,
                                              parse_params(knobs.policy_params))
        source = make_source(config, knobs.duration, knobs.seed, knobs.trace, load=knobs.load)
        self.progress(f"closed loop: {config.n_vfs} VFs, seed {knobs.seed}, policy "
                      f"{policy_name}, workload {knobs.trace or 'phase mix'}, "
                      f"{knobs.duration} cycles, window {knobs.window}")
        await RequestListSeq("msix_init", gen.msix_init()).start(self.seqr)
        await self.drain("MSI-X programming")
        await self.vmm.program_irtes()
        await self.spoof(gen)
        self.loop = ClosedLoop(self, source, policy_name, policy, knobs.window,
                               thrash_window=6 * knobs.window, gen=gen,
                               heartbeat=bool(knobs.heartbeat))
        await self.loop.run(knobs.duration)
        await self.drain("workload")
        m = self.loop.metrics()
        self.progress(f"workload done after {self.sb.totals.requests} requests: mean latency "
                      f"{m['mean_latency']}, p99 {m['p99_latency']} cycles, {m['migrations']} "
                      f"migrations, {m['thrash']} thrash; reading back {config.n_vfs} images")
        await self.finish(gen)

    def plan(self):
        return []

    def extra_report(self) -> dict:
        loop = getattr(self, "loop", None)
        return loop.report() if loop else {}
