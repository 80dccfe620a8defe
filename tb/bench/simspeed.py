"""Simulation speed of the system top: raw Verilator, cocotb with a clock only, `make sim`.

    python -m tb.bench.simspeed [--cycles 200000] [--out build/bench/simspeed.json]

All measured in one run, on the default configuration's ``system.v`` (the one `make sim`
builds), Verilator only:

- ``verilator_build_s``: a cold build (no ccache) of that ``system.v`` with the flags of
  the cocotb build (tb/common/runner.py ``build_args``), into a directory of its own;
- ``raw_cycles_per_s``: a plain C++ harness over the same ``system.v`` and flags (no VPI
  library, no Python): reset, then ``--cycles`` free-running cycles;
- ``cocotb_clock_only_cycles_per_s``: the cocotb build with only cocotb's (C) clock
  running and one Timer over the same cycles (no Python per cycle);
- ``make_sim_cycles_per_s``: the default closed loop (``python -m tb.system.sim``), its
  cycles over its simulation seconds;
- ``ratio = make_sim / raw``; ``verilog_lines`` of ``system.v``.

Writes the JSON, prints the figures, and exits 1 when ``ratio`` is below ``TARGET_RATIO`` or
``raw`` below ``TARGET_RAW`` (issue 10's targets), or a measurement failed; 2 on bad
arguments or a missing Verilator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tb.common.runner import (
    BUILD,
    ROOT,
    SimulatorError,
    build,
    build_args,
    check_simulator,
    make_runner,
    run_tests,
)

TARGET_RATIO = 0.5
TARGET_RAW = 84_000           # cycles/s of the raw model before this bench existed
CLOCK_ENV = "VFMIG_SIMSPEED"  # "<cycles>:<result file>" for tb/bench/simspeed_clock.py
HARNESS = r"""
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include "Vtop.h"
#include "verilated.h"

int main(int argc, char** argv) {
    VerilatedContext ctx;
    Vtop top{&ctx};
    long cycles = std::atol(argv[1]);
    top.rst = 1;
    for (int i = 0; i < 16; i++) { top.clk = i & 1; top.eval(); }
    top.rst = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < cycles; i++) {
        top.clk = 1; top.eval();
        top.clk = 0; top.eval();
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%ld %.6f\n", cycles, s);
    top.final();
    return 0;
}
"""


def _system():
    from hdl.system import System
    from tb.system.sim import make_config
    config = make_config()
    return config, (lambda: System(config))


def cold_build_seconds(source: Path, out: Path) -> float:
    """Build ``source`` as the cocotb runner does, from nothing and without ccache."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env_cache = os.environ.pop("OBJCACHE", None)
    try:
        start = time.monotonic()
        make_runner("verilator").build(
            sources=[source], hdl_toplevel="system", build_dir=out,
            build_args=build_args("verilator", "system", out), timescale=("1ns", "1ps"),
            log_file=out / "build.log")
        return time.monotonic() - start
    finally:
        if env_cache is not None:
            os.environ["OBJCACHE"] = env_cache


def raw_cycles_per_s(source: Path, out: Path, cycles: int) -> float:
    """The plain C++ harness over ``source``: built with the cocotb build's Verilator flags
    (``--vpi --public-flat-rw``, then ours), run once."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "harness.cpp").write_text(HARNESS)
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "-Mdir", str(out),
           "--top-module", "system", "--vpi", "--public-flat-rw", "--prefix", "Vtop",
           "-o", "raw", *build_args("verilator", "system", out), "--timescale", "1ns/1ps",
           str(out / "harness.cpp"), str(source)]
    log = out / "build.log"
    with open(log, "w") as fh:
        if subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode:
            raise RuntimeError(f"the raw harness did not build; see {log}")
    done = subprocess.run([str(out / "raw"), str(cycles)], capture_output=True, text=True,
                          check=True)
    ran, seconds = done.stdout.split()
    return int(ran) / float(seconds)


def clock_only_cycles_per_s(parameters: dict, factory, out: Path, cycles: int) -> float:
    result = out / "clock_only.json"
    result.unlink(missing_ok=True)
    run_tests("verilator", "system", factory, "tb.bench.simspeed_clock", parameters=parameters,
              extra_env={CLOCK_ENV: f"{cycles}:{result}"}, results_name="clock_only.xml")
    doc = json.loads(result.read_text())
    return doc["cycles"] / doc["seconds"]


def make_sim_cycles_per_s(out: Path) -> tuple[float, dict]:
    report = out / "make_sim_report.json"
    cmd = [sys.executable, "-m", "tb.system.sim", "--sim", "verilator", "--seed", "1",
           "--report", str(report)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode or not report.exists():
        raise RuntimeError(f"make sim failed (exit {done.returncode}): "
                           f"{done.stderr.strip().splitlines()[-1:]}")
    doc = json.loads(report.read_text())
    return doc["cycles"] / doc["wall_seconds"], {"cycles": doc["cycles"],
                                                  "sim_seconds": doc["wall_seconds"]}


def measure(cycles: int, out: Path) -> dict:
    config, factory = _system()
    parameters = config.to_dict()
    build_dir, _ = build("verilator", "system", factory, parameters)
    source = build_dir / "system.v"
    figures = {
        "verilator_build_s": round(cold_build_seconds(source, out / "cold_build"), 1),
        "raw_cycles_per_s": round(raw_cycles_per_s(source, out / "raw", cycles)),
        "cocotb_clock_only_cycles_per_s": round(
            clock_only_cycles_per_s(parameters, factory, out, cycles)),
    }
    figures["make_sim_cycles_per_s"], make_sim = make_sim_cycles_per_s(out)
    figures["make_sim_cycles_per_s"] = round(figures["make_sim_cycles_per_s"])
    figures["ratio"] = round(figures["make_sim_cycles_per_s"] / figures["raw_cycles_per_s"], 3)
    figures["verilog_lines"] = len(source.read_text().splitlines())
    figures["measured"] = {"cycles": cycles, "make_sim": make_sim, "config": parameters}
    return figures


def target_failures(figures: dict) -> list[str]:
    out = []
    if figures["ratio"] < TARGET_RATIO:
        out.append(f"ratio {figures['ratio']} below {TARGET_RATIO}")
    if figures["raw_cycles_per_s"] < TARGET_RAW:
        out.append(f"raw {figures['raw_cycles_per_s']} cycles/s below {TARGET_RAW}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tb.bench.simspeed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=BUILD / "bench" / "simspeed.json")
    args = parser.parse_args(argv)
    if args.cycles < 1000:
        print(f"error: --cycles must be at least 1000, not {args.cycles}", file=sys.stderr)
        return 2
    try:
        check_simulator("verilator")
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    work = args.out.parent / "simspeed"
    try:
        figures = measure(args.cycles, work)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        print(f"simspeed: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    for key in ("raw_cycles_per_s", "cocotb_clock_only_cycles_per_s", "make_sim_cycles_per_s",
                "ratio", "verilog_lines", "verilator_build_s"):
        print(f"  {key:32} {figures[key]}")
    print(f"wrote {args.out}")
    failures = target_failures(figures)
    for text in failures:
        print(f"target missed: {text}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
