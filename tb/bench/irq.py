"""Interrupt remapping latency and throughput, measured in simulation (cocotb ``bench_irq``).

``measure(sim)`` runs ``tb.irq_remap.test_irq_remap.bench_irq`` on the generated Verilog of
``IrqRemap`` (``tb.irq_remap.BENCH_PARAMS``): every entry present and unmasked, 4000
interrupts offered back to back, no backpressure, no VF held. It returns

- ``remap_latency_cycles``: the largest (cycle the interrupt is valid on ``irq_out``) -
  (cycle it was first valid on ``irq_in``) over all interrupts;
- ``interrupts_per_cycle``: interrupts delivered / cycles from the first one offered to the
  last one delivered, inclusive (so the pipeline fill counts against it).

``python -m tb.bench.irq [--sim SIM]`` writes ``build/bench/irq.json`` with those two keys.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tb.common.runner import BUILD, SimulatorError, default_simulator, failed_tests, run_tests
from tb.irq_remap import BENCH_PARAMS, build_remap, params_to_env

BENCH_SEED = 1
BENCH_OUT = BUILD / "bench" / "irq.json"
MAX_LATENCY = 2
MIN_INTERRUPTS_PER_CYCLE = 0.95


def measure(sim: str = "verilator") -> dict:
    """Run the cocotb bench on ``sim``; raises RuntimeError if it fails or misses a target."""
    with tempfile.TemporaryDirectory() as tmp:
        figure = Path(tmp) / "irq.json"
        results = run_tests(sim, "irq_remap", lambda: build_remap(BENCH_PARAMS),
                            "tb.irq_remap.test_irq_remap",
                            parameters={**BENCH_PARAMS.to_dict(), "fault_inject": None},
                            testcase="bench_irq", seed=BENCH_SEED, results_name="bench.xml",
                            extra_env={**params_to_env(BENCH_PARAMS),
                                       "VFMIG_BENCH_OUT": str(figure)})
        failed = failed_tests(Path(results))
        if failed or not figure.exists():
            raise RuntimeError(f"interrupt remap bench failed on {sim} ({', '.join(failed)}); "
                               f"see {Path(results).parent / 'sim.log'}")
        doc = json.loads(figure.read_text())
    return {"remap_latency_cycles": int(doc["remap_latency_cycles"]),
            "interrupts_per_cycle": float(doc["interrupts_per_cycle"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", default=default_simulator(), choices=["verilator", "icarus"])
    parser.add_argument("--out", type=Path, default=BENCH_OUT)
    args = parser.parse_args(argv)
    try:
        figure = measure(args.sim)
    except SimulatorError as exc:
        print(f"bench_irq: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"bench_irq: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figure, indent=2) + "\n")
    print(f"interrupt remapping on {args.sim}: latency {figure['remap_latency_cycles']} cycles, "
          f"{figure['interrupts_per_cycle']:.4f} interrupts/cycle -> {args.out}")
    ok = (figure["remap_latency_cycles"] <= MAX_LATENCY
          and figure["interrupts_per_cycle"] >= MIN_INTERRUPTS_PER_CYCLE)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
