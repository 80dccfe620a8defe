"""DMA read throughput benchmark on the generated Verilog (cocotb ``bench_throughput``).

``measure_words_per_cycle(sim)`` streams 64 back-to-back 64-word read descriptors with no
backpressure through ``DMAHarness`` and returns data words per cycle, counted from the first
descriptor accepted to the last beat accepted. ``python -m tb.bench.dma [--sim SIM]`` writes
``build/bench/dma.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from tb.common.runner import BUILD, failed_tests, run_tests
from tb.dma.harness import HARNESS_PARAMETERS, dma_harness

BENCH_SEED = 1
BENCH_OUT = BUILD / "bench" / "dma.json"


def measure_words_per_cycle(sim: str = "verilator") -> float:
    """Run the cocotb throughput bench on ``sim``; raises RuntimeError if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        figure = Path(tmp) / "dma.json"
        results = run_tests(sim, "dma_harness", dma_harness, "tb.dma.test_dma",
                            parameters=HARNESS_PARAMETERS, testcase="bench_throughput",
                            extra_env={"VFMIG_BENCH_OUT": str(figure)}, seed=BENCH_SEED,
                            results_name="bench.xml")
        failed = failed_tests(Path(results))
        if failed or not figure.exists():
            raise RuntimeError(f"DMA throughput bench failed on {sim} ({', '.join(failed)}); "
                               f"see {Path(results).parent / 'sim.log'}")
        return float(json.loads(figure.read_text())["words_per_cycle"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    parser.add_argument("--out", type=Path, default=BENCH_OUT)
    args = parser.parse_args(argv)
    try:
        words_per_cycle = measure_words_per_cycle(args.sim)
    except RuntimeError as exc:
        print(f"bench_dma: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"words_per_cycle": words_per_cycle}, indent=2) + "\n")
    print(f"DMA read throughput on {args.sim}: {words_per_cycle:.4f} words/cycle -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
