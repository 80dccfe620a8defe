"""DMA read throughput benchmark on the generated Verilog (cocotb ``bench_throughput``).

``measure_words_per_cycle(sim)`` streams 64 back-to-back 64-word read descriptors with no
backpressure through ``DMAHarness`` and returns data words per cycle, counted from the first
descriptor accepted to the last beat accepted. ``python -m tb.bench.dma [--sim SIM]`` writes
``build/bench/dma.json``.
"""

from __future__ import annotations

import sys

from tb.bench.cli import figure_cli
from tb.common.runner import BUILD, run_figure
from tb.dma.harness import HARNESS_PARAMETERS, dma_harness

BENCH_SEED = 1
BENCH_OUT = BUILD / "bench" / "dma.json"


def measure_words_per_cycle(sim: str = "verilator") -> float:
    """Run the cocotb throughput bench on ``sim``; raises RuntimeError if it fails."""
    doc = run_figure(sim, "dma_harness", dma_harness, "tb.dma.test_dma", "bench_throughput",
                     "VFMIG_BENCH_OUT", "DMA throughput bench",
                     parameters=HARNESS_PARAMETERS, seed=BENCH_SEED)
    return float(doc["words_per_cycle"])


def main(argv: list[str] | None = None) -> int:
    done = figure_cli("bench_dma", __doc__.splitlines()[0], BENCH_OUT,
                      lambda sim: {"words_per_cycle": measure_words_per_cycle(sim)}, argv)
    if isinstance(done, int):
        return done
    sim, out, figure = done
    print(f"DMA read throughput on {sim}: {figure['words_per_cycle']:.4f} words/cycle -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
