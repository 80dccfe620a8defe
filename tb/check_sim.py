"""``python -m tb.check_sim SIM``: exit 0 if the simulator is known and installed, else print
one line saying what to do (tb.common.runner.check_simulator) and exit 1.  Used by the
Makefile before any target that runs a simulator."""

from __future__ import annotations

import sys

from tb.common.runner import SimulatorError, check_simulator


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tb.check_sim verilator|icarus", file=sys.stderr)
        return 2
    try:
        check_simulator(argv[0])
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
