"""The command line of a one-figure bench (tb/bench/dma.py, tb/bench/irq.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tb.common.runner import SimulatorError, default_simulator


def figure_cli(prog: str, description: str, default_out: Path, measure: Callable[[str], dict],
               argv: list[str] | None) -> tuple[str, Path, dict] | int:
    """Parse ``--sim`` and ``--out``, run ``measure(sim)`` and write its figure as JSON to
    ``--out``; returns (sim, out, figure), or the exit status after one line on stderr
    (2: the simulator is unknown or missing, 1: the run failed)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--sim", default=default_simulator(), choices=["verilator", "icarus"])
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    try:
        figure = measure(args.sim)
    except RuntimeError as exc:   # SimulatorError is one
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SimulatorError) else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figure, indent=2) + "\n")
    return args.sim, args.out, figure


def usage_error(exc: Exception) -> int:
    """A bench's answer to bad input: one line on stderr, exit status 2."""
    print(f"error: {exc}", file=sys.stderr)
    return 2
