"""The board self-test in simulation: the SelfTest core of each board (the same one the
bitstream holds, with a faster UART so a report line takes microseconds, not milliseconds)
must complete two rounds (one with the link faults on) and print PASS; with a deliberate
design fault built in it must print FAIL.

The cocotb side only clocks, resets, decodes the UART and reads the pass/fail outputs: the
checking is the hardware's own."""

from __future__ import annotations

import os

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from tb.common.runner import run_tests, simulator_available

EXPECT_ENV = "VFMIG_SELFTEST_EXPECT"
CYCLES_ENV = "VFMIG_SELFTEST_CYCLES"
SIM_BAUD_DIVISOR = 8          # UART cycles per bit in simulation (the board: clk_hz / 115200)
ROUNDS = 2
MAX_CYCLES = {"ulx3s-25f": 1_000_000, "ulx3s-85f": 8_000_000}   # bounds, never reached


async def uart_lines(dut, divisor: int, lines: list[str]) -> None:
    """Decode 8N1 characters on ``uart_tx`` into ``lines``."""
    text = ""
    while True:
        await FallingEdge(dut.uart_tx)
        await ClockCycles(dut.clk, divisor + divisor // 2)
        byte = 0
        for bit in range(8):
            byte |= int(dut.uart_tx.value) << bit
            await ClockCycles(dut.clk, divisor)
        text += chr(byte)
        if text.endswith("\r\n"):
            lines.append(text[:-2])
            dut._log.info("uart: %s", text[:-2])
            text = ""


@cocotb.test()
async def selftest(dut):
    expect = os.environ.get(EXPECT_ENV, "pass")
    max_cycles = int(os.environ[CYCLES_ENV])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    lines: list[str] = []
    cocotb.start_soon(uart_lines(dut, SIM_BAUD_DIVISOR, lines))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    cycles = 0
    while cycles < max_cycles and not int(dut.failed.value) and int(dut.rounds.value) < ROUNDS:
        await ClockCycles(dut.clk, 2000)
        cycles += 2000
    await ClockCycles(dut.clk, 200 * 10 * SIM_BAUD_DIVISOR)   # the report line goes out
    await RisingEdge(dut.clk)
    dut._log.info("self-test after %d cycles: rounds %d, passed %d, failed %d, leds %s",
                  cycles, int(dut.rounds.value), int(dut.passed.value),
                  int(dut.failed.value), dut.leds.value)
    if expect == "pass":
        assert not int(dut.failed.value), f"self-test failed: {lines}"
        assert int(dut.rounds.value) >= ROUNDS, f"only {int(dut.rounds.value)} rounds in " \
                                                f"{cycles} cycles"
        assert int(dut.passed.value) and int(dut.leds.value) & 0b110 == 0b010
        assert len(lines) >= ROUNDS and all(" PASS " in line for line in lines), lines
        faults = int(lines[-1].split(" faults ")[1].split()[0], 16)
        assert faults > 0, f"the faulted round injected nothing: {lines[-1]}"
    else:
        assert int(dut.failed.value), f"the planted fault went unnoticed ({cycles} cycles)"
        assert int(dut.leds.value) & 0b110 == 0b100
        assert lines and " FAIL " in lines[-1], lines


def _selftest(board_name: str, fault: str | None):
    from fpga.boards import board_named
    from hdl.board.selftest import SelfTest

    board = board_named(board_name)
    clk_hz = int(board.target_mhz * 1e6)
    return SelfTest(board.config, clk_hz=clk_hz, baud=clk_hz // SIM_BAUD_DIVISOR,
                    poll_limit=1 << 16, _fault_inject=fault)


def run_selftest(sim: str, board: str, fault: str | None = None) -> None:
    name = f"selftest_{board.replace('-', '_')}" + (f"_{fault}" if fault else "")
    run_tests(sim, name, lambda: _selftest(board, fault), __name__,
              parameters={"board": board, "fault": fault},
              extra_env={EXPECT_ENV: "fail" if fault else "pass",
                         CYCLES_ENV: str(MAX_CYCLES[board])})


# Icarus takes minutes for the 70,000-line board design: slow there, as the system benches.
SIMS = ["verilator", pytest.param("icarus", marks=pytest.mark.slow)]


def _available(sim: str) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")


@pytest.mark.parametrize("sim", SIMS)
def test_selftest_passes_on_the_small_board(sim: str) -> None:
    _available(sim)
    run_selftest(sim, "ulx3s-25f")


@pytest.mark.parametrize("sim", SIMS)
def test_selftest_catches_a_corrupted_state_write(sim: str) -> None:
    _available(sim)
    run_selftest(sim, "ulx3s-25f", "corrupt_state_write")


@pytest.mark.slow
@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_selftest_passes_on_the_default_board(sim: str) -> None:
    _available(sim)
    run_selftest(sim, "ulx3s-85f")




@pytest.mark.slow
def test_selftest_catches_a_corrupted_state_write_on_the_default_board() -> None:
    _available("verilator")
    run_selftest("verilator", "ulx3s-85f", "corrupt_state_write")
