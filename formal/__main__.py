"""``python -m formal [--block NAME ...] [--out DIR]``: the formal checks of every block.

Writes ``<out>/summary.json`` ``{"<block>": {"bmc", "depth", "prove", "cover", "seconds"}}``
and prints a counterexample trace's path for each failed check, then
``formal: N passed, M failed`` (blocks). Exit status 1 when a check failed or a formal tool
is missing (one line says what to install).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .blocks import BLOCKS
from .core import check, missing_tool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m formal", description=__doc__)
    parser.add_argument("--block", action="append", choices=sorted(BLOCKS),
                        help="check only this block (repeatable; default: all)")
    parser.add_argument("--out", type=Path, default=Path("build/formal"))
    args = parser.parse_args(argv)
    problem = missing_tool()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "summary.json"
    failed = 0
    names = args.block or sorted(BLOCKS)
    for name in names:
        result = check(BLOCKS[name], args.out)
        # Re-read: another `python -m formal --block` may have written meanwhile.
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        summary[name] = result.summary()
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"{name}: {json.dumps(summary[name])}")
        bad = result.bmc != "pass" or result.prove == "fail"
        for trace in result.traces:
            print(f"  counterexample: {trace}")
        failed += bad
    print(f"wrote {summary_path}")
    # A closing line CI reads like a test runner's: blocks passed (BMC pass, prove not
    # failed), blocks failed.
    print(f"formal: {len(names) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
