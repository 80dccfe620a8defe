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

import sys

from tb.bench.cli import figure_cli
from tb.common.runner import BUILD, run_figure
from tb.irq_remap import BENCH_PARAMS, build_remap, params_to_env

BENCH_SEED = 1
BENCH_OUT = BUILD / "bench" / "irq.json"
MAX_LATENCY = 2
MIN_INTERRUPTS_PER_CYCLE = 0.95


def measure(sim: str = "verilator") -> dict:
    """Run the cocotb bench on ``sim``; raises RuntimeError if it fails or misses a target."""
    doc = run_figure(sim, "irq_remap", lambda: build_remap(BENCH_PARAMS),
                     "tb.irq_remap.test_irq_remap", "bench_irq", "VFMIG_BENCH_OUT",
                     "interrupt remap bench",
                     parameters={**BENCH_PARAMS.to_dict(), "fault_inject": None},
                     seed=BENCH_SEED, extra_env=params_to_env(BENCH_PARAMS))
    return {"remap_latency_cycles": int(doc["remap_latency_cycles"]),
            "interrupts_per_cycle": float(doc["interrupts_per_cycle"])}


def main(argv: list[str] | None = None) -> int:
    done = figure_cli("bench_irq", __doc__.splitlines()[0], BENCH_OUT, measure, argv)
    if isinstance(done, int):
        return done
    sim, out, figure = done
    print(f"interrupt remapping on {sim}: latency {figure['remap_latency_cycles']} cycles, "
          f"{figure['interrupts_per_cycle']:.4f} interrupts/cycle -> {out}")
    ok = (figure["remap_latency_cycles"] <= MAX_LATENCY
          and figure["interrupts_per_cycle"] >= MIN_INTERRUPTS_PER_CYCLE)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
