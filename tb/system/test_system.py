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
from pathlib import Path

import cocotb
import pyuvm
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer
from pyuvm import ConfigDB, uvm_test

from model.config import Device, SystemConfig
from model.regmap import GLOBAL, ID_VALUE
from model.vfio import DeviceState

from .env import (
    Knobs,
    RandomTrafficSeq,
    RequestListSeq,
    SystemEnv,
    VmBfm,
    config_from_dict,
)
from .traffic import TrafficGenerator
from .vmm import CLOCK_NS, check_plan, default_plan, format_plan, heavy_vfs, parse_plan


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

    async def scenario(self):
        knobs, config = self.knobs, self.config
        cocotb.start_soon(Clock(self.dut.clk, CLOCK_NS, unit="ns").start())
        await self.bfm.reset()
        self.bfm.start()
        await self.check_identity()
        steps = self.steps = self.plan()
        heavy = (tuple(int(v) for v in knobs.heavy_vfs.split(",")) if knobs.heavy_vfs
                 else heavy_vfs(config))
        gen = TrafficGenerator(config.layout, config.n_vfs, config.tag_bits,
                               random.Random(self.rng.getrandbits(32)), heavy_vfs=heavy,
                               error_prob=knobs.error_prob)
        self.progress(f"scenario: {config.n_vfs} VFs, seed {knobs.seed}, write-heavy VF(s) "
                      f"{list(heavy)}, plan {format_plan(steps)}")
        await RequestListSeq("msix_init", gen.msix_init()).start(self.seqr)
        await self.drain("MSI-X programming")
        traffic = self.traffic = RandomTrafficSeq("traffic", gen)
        traffic_task = cocotb.start_soon(traffic.start(self.seqr))
        await self.cycles(knobs.warmup_cycles)
        for step in steps:
            await self.vmm.run(step)
            await self.cycles(knobs.gap_cycles)
        traffic.stop()
        await traffic_task
        await self.drain("traffic")
        self.progress(f"traffic stopped after {self.sb.totals.requests} requests; "
                      f"reading back {config.n_vfs} images")
        for vf in range(config.n_vfs):
            await RequestListSeq(f"readback_{vf}", gen.readback(vf)).start(self.seqr)
        await self.drain("image read-back")
        await self.check_final_states()
        await self.cycles(200)  # interrupts still pending somewhere come out

    async def check_identity(self):
        bus, config = self.vmm.bus, self.config
        ident = await bus.read(GLOBAL["ID"])
        self.vmm.expect(ident == ID_VALUE, f"ID reads 0x{ident:08x}, expected 0x{ID_VALUE:08x}")
        words = await bus.read(GLOBAL["IMAGE_WORDS"])
        self.vmm.expect(words == config.layout.image_words,
                        f"IMAGE_WORDS reads {words}, expected {config.layout.image_words}")
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

    def report_phase(self):
        sb, vmm, knobs, config = self.sb, self.vmm, self.knobs, self.config
        totals = sb.finish()
        migrations = [r.report() for r in vmm.records]
        problems = list(vmm.problems) + ([self.failure] if self.failure else [])
        passed = sb.ok() and not problems
        report = {
            "config": {**config.to_dict(), "seed": knobs.seed, "sim": knobs.sim},
            "plan": format_plan(self.steps),
            "migrations": migrations,
            "totals": {**totals.to_dict(), "vmm_problems": len(problems)},
            "interrupts": sb.irq_summary(),
            "cycles": self.bfm.cycles,
            "request_stall_cycles": self.bfm.stall_cycles,
            "wall_seconds": round(time.monotonic() - self.wall_start, 1),
            "passed": passed,
            "problems": problems + sb.messages,
        }
        if knobs.report:
            Path(knobs.report).parent.mkdir(parents=True, exist_ok=True)
            Path(knobs.report).write_text(json.dumps(report, indent=2) + "\n")
        self.progress(f"done: {self.bfm.cycles} cycles, {totals.requests} requests, "
                      f"{totals.responses_checked} responses checked, {totals.mismatches} "
                      f"mismatches, {totals.lost} lost, {len(problems)} VMM problems")
        for text in problems:
            self.logger.error(text)
        assert passed, (f"system scenario failed (seed {knobs.seed}): "
                        f"{(problems + sb.messages)[:5]}")

