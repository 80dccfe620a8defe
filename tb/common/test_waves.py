"""WAVES=1 (tb/common/runner.py): a cocotb run writes an FST of the whole design beside its
results, on either simulator, from a build of its own.

The pytest entry and the cocotb module in one file: ``test_waves_are_written`` runs this
file's ``@cocotb.test`` on a tiny counter with WAVES=1 and reads the FST back (pywellen):
the counter's own output is in it, and the clock toggles as long as the test ran.
"""

from __future__ import annotations

import cocotb
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from tb.common.runner import SimulatorError, bench_matrix, run_tests, waves_file, waves_wanted

CYCLES = 40
PERIOD_PS = 10_000


class Counter(wiring.Component):
    def __init__(self):
        super().__init__({"count": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.count.eq(self.count + 1)
        return m


@cocotb.test()
async def counts(dut):
    cocotb.start_soon(Clock(dut.clk, PERIOD_PS // 1000, "ns").start())
    await ClockCycles(dut.clk, CYCLES)
    assert int(dut.count.value) >= CYCLES - 2


@bench_matrix()
def test_waves_are_written(sim: str, monkeypatch) -> None:
    pywellen = pytest.importorskip("pywellen")
    monkeypatch.setenv("WAVES", "1")
    try:
        results = run_tests(sim, "waves_counter", Counter, __name__)
    except SimulatorError as exc:   # Verilator without liblz4-dev: the one-line reason
        pytest.skip(str(exc))
    path = waves_file(results)
    assert path is not None, "WAVES=1 wrote no waves.fst"
    wave = pywellen.Waveform(str(path))
    names = {v.name: v for v in wave.all_vars()}
    assert {"clk", "count"} <= names.keys(), sorted(names)
    clk = names["clk"].signal
    levels = [clk.value_at(t) for t in range(PERIOD_PS // 4, CYCLES * PERIOD_PS, PERIOD_PS // 2)]
    toggles = sum(a != b for a, b in zip(levels, levels[1:], strict=False))
    assert toggles >= 2 * CYCLES - 4, levels


def test_waves_value_is_checked(monkeypatch):
    monkeypatch.setenv("WAVES", "maybe")
    with pytest.raises(ValueError, match="WAVES='maybe' is not a yes/no value"):
        waves_wanted()
    monkeypatch.setenv("WAVES", "0")
    assert waves_wanted() is False
