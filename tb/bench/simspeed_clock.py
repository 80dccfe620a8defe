"""cocotb test of tb/bench/simspeed.py: the system top with only a clock running.

cocotb's clock is driven from C (GPI), and one Timer covers the measured cycles, so no
Python runs per cycle: what is left is the model as cocotb builds it, behind VPI.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Timer

from tb.bench.simspeed import CLOCK_ENV

PERIOD_NS = 10


@cocotb.test()
async def clock_only(dut):
    cycles, result = os.environ[CLOCK_ENV].split(":", 1)
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    await ClockCycles(dut.clk, 8)
    dut.rst.value = 0
    start = time.perf_counter()
    await Timer(int(cycles) * PERIOD_NS, "ns")
    seconds = time.perf_counter() - start
    Path(result).write_text(json.dumps({"cycles": int(cycles), "seconds": seconds}) + "\n")
