"""cocotb bench of hdl/profiler.py on the generated Verilog (Verilator and Icarus).

Random legal traffic (tb/profiler.random_traffic) at several loads drives the observation
ports cycle by cycle; after every snapshot the bench reads the whole snapshot bank while
traffic goes on, and the reads are scored against the whole-request reference
(tb/profiler.reference_windows). With 32-bit counters the reads must also make valid model
snapshots (``CounterSnapshot``/``DeviceSnapshot``) that ``model.profiler.Profiler`` analyses.

The configuration comes from ``VFMIG_BENCH_CONFIG`` (tb/profiler/test_profiler.py); each test's
generator seeds come from its seed (tb/common/seeds.py), which cocotb derives from
``COCOTB_RANDOM_SEED`` and the full test name (load included): every test logs both, and
``VFMIG_SEED`` reproduces a run.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from model.profiler import Profiler as Analyser
from tb.common.runner import bench_matrix
from tb.common.seeds import bench_seed, generator_seeds
from tb.profiler import (
    CONFIGS,
    Cycle,
    Plan,
    ProfilerParams,
    compare,
    counter_snapshot,
    device_snapshot,
    random_traffic,
    read_back,
)


class ProfilerTB:
    """Drives a plan's inputs between clock edges and samples ``rd_data``."""

    def __init__(self, dut, params: ProfilerParams):
        self.dut, self.params = dut, params
        self.ports = {name: getattr(dut, name) for name in Cycle().ports(params)}
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self) -> None:
        for handle in self.ports.values():
            handle.value = 0
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 3)
        await FallingEdge(self.dut.clk)

    async def run(self, plan: Plan) -> list[int]:
        """Cycle k's inputs are set before its rising edge; element k of the result is
        ``rd_data`` after that edge (the answer to cycle k's read)."""
        self.dut.rst.value = 0  # cycle 0 is the first edge without reset
        last: dict[str, int] = {}
        rd_data: list[int] = []
        for k, cycle in enumerate(plan.cycles):
            if k:
                await FallingEdge(self.dut.clk)
                rd_data.append(int(self.dut.rd_data.value))
            for name, value in cycle.ports(self.params).items():
                if last.get(name) != value:
                    self.ports[name].value = value
                    last[name] = value
        await FallingEdge(self.dut.clk)
        rd_data.append(int(self.dut.rd_data.value))
        return rd_data


LOADS = {"light": (0.2, 0.2), "busy": (0.6, 0.55), "saturated": (0.95, 0.9)}


@cocotb.test()
@cocotb.parametrize(load=list(LOADS))
async def random_traffic_windows(dut, load: str) -> None:
    params = ProfilerParams.from_env()
    [seed] = generator_seeds(dut._log, 1, f"profiler random traffic: {load} load, {params}")
    req_prob, resp_prob = LOADS[load]
    narrow = params.counter_bits < 16
    plan = random_traffic(params, random.Random(seed), n_windows=5, req_prob=req_prob,
                          resp_prob=resp_prob, extra_cycles=(150, 300) if narrow else (0, 150))
    tb = ProfilerTB(dut, params)
    await tb.reset()
    rd_data = await tb.run(plan)
    errors = compare(params, plan, rd_data)
    assert not errors, f"traffic seed {seed}: {len(errors)} mismatches:\n" + "\n".join(errors[:20])

    windows = read_back(params, plan, rd_data)
    requests = sum(v["requests"] for w in windows for v in w.vfs)
    dut._log.info("%d cycles, %d windows read, %d requests counted", len(plan.cycles),
                  len(windows), requests)
    assert requests > 0
    if narrow:
        return  # saturated counts are not a consistent CounterSnapshot (histogram != count)
    for window in windows:
        snaps = [counter_snapshot(vf, regs) for vf, regs in enumerate(window.vfs)]
        dev = device_snapshot(window.device, slots=(8, 4), link_words_per_cycle=2)
        report = Analyser().analyse(snaps, dev, end=window.end)
        assert report.contention.window == window.device["window"]


# ---------------------------------------------------------------- pytest entry
# pytest entry of the profiler's cocotb bench (tb/profiler): every configuration on every
# installed simulator. ``VFMIG_SEED`` picks the seed (logged by every cocotb test).

@bench_matrix(CONFIGS)
def test_cocotb_profiler(sim: str, config: str) -> None:
    CONFIGS[config].run_bench(sim, f"profiler_{config}", __name__, seed=bench_seed(20240621))
