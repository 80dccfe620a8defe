"""``python -m tb.regress`` (``make regress``): run a suite, write build/regress/*.

smoke: every test of every testplan once with its bench's fixed seed, on Verilator.
nightly: ``--seeds N`` seeds per randomised test, derived from one master seed (printed;
``--master-seed`` sets it), the other tests once; on both simulators.
``--sim`` restricts either suite to one simulator.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

from hdl.irq_remap import FAULT_INJECTIONS as PLANTS
from tb.common.runner import SIMULATORS, SimulatorError, check_simulator
from tb.regress import run
from tb.regress.results import write_all
from tb.regress.testplan import PLANS, ROOT, PlanError, all_tests, load_all

SUITES = ("smoke", "nightly")


class UsageError(ValueError):
    """Bad input: one line saying what is wrong and what exists."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tb.regress", description=__doc__)
    p.add_argument("--suite", default="smoke", help="smoke | nightly")
    p.add_argument("--seeds", type=int, default=10, help="nightly: seeds per randomised test")
    p.add_argument("--master-seed", type=int, default=None,
                   help="nightly: the seed every run's seed derives from (default: random)")
    p.add_argument("--tests", default="", help="comma list of fnmatch patterns over test names")
    p.add_argument("--sim", default="", help="verilator | icarus (default: smoke on "
                   "verilator, nightly on both)")
    p.add_argument("--jobs", type=int, default=2, help="local worker processes")
    p.add_argument("--scheduler", default="", help="tcp://host:port of a Dask scheduler")
    p.add_argument("--plant", default="", help="build the irq_remap bench with this "
                   "deliberate fault (VFMIG_PLANT, e.g. double_replay): the regression must "
                   "fail")
    p.add_argument("--plans", type=Path, default=PLANS)
    p.add_argument("--out", type=Path, default=ROOT / "build" / "regress")
    return p.parse_args(argv)


def select(tests: dict, pattern: str) -> list:
    if not pattern:
        return list(tests.values())
    pats = [x.strip() for x in pattern.split(",") if x.strip()]
    chosen = [t for name, t in tests.items() if any(fnmatch.fnmatch(name, x) for x in pats)]
    if not chosen:
        raise UsageError(f"TESTS={pattern!r} matches no test; tests: {', '.join(tests)}")
    return chosen


def simulators(suite: str, sim: str) -> tuple[str, ...]:
    """The simulators a suite runs on: ``sim`` when given, else the suite's default (smoke
    on Verilator alone, for its time bound; nightly on every simulator)."""
    sims = (sim,) if sim else ("verilator",) if suite == "smoke" else SIMULATORS
    return tuple(check_simulator(s) for s in sims)


def check_plant(plant: str) -> None:
    if plant and plant not in PLANTS:
        raise UsageError(f"unknown PLANT={plant!r}: the deliberate faults are "
                         f"{', '.join(PLANTS)} (hdl/irq_remap.py)")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if args.suite not in SUITES:
            raise UsageError(f"unknown SUITE={args.suite!r}: suites are {', '.join(SUITES)}")
        if args.seeds < 1 or args.jobs < 1:
            raise UsageError("SEEDS and JOBS must be at least 1")
        check_plant(args.plant)
        sims = simulators(args.suite, args.sim)
        plans = load_all(args.plans)
        tests = select(all_tests(plans), args.tests)
        client = run.connect(args.scheduler) if args.scheduler else None
    except (UsageError, SimulatorError, PlanError, run.SchedulerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    master = None
    if args.suite == "nightly":
        master = args.master_seed if args.master_seed is not None else random.randrange(2**31)
        print(f"master seed {master} (rerun the suite with MASTER_SEED={master})")
    jobs = run.make_jobs(tests, sims, args.seeds, master, args.plant)
    where = client.scheduler.address if client else f"{args.jobs} local workers"
    print(f"suite {args.suite}: {len(jobs)} runs on {', '.join(sims)}, {where}")
    if args.out.exists():
        shutil.rmtree(args.out)
    (args.out / "runs").mkdir(parents=True)

    def done(r: dict) -> None:
        print(f"  {r['status']:6} {r['run_id']} ({r['seconds']} s)", flush=True)

    start = time.monotonic()
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    if client:
        results = run.run_dask(jobs, args.out / "runs", client, done)
        client.close()
    else:
        results = run.run_local(jobs, args.out / "runs", args.jobs, done)
    summary = {"suite": args.suite, "master_seed": master, "sim": ",".join(sims),
               "runs": len(results),
               "passed": sum(r["status"] == "passed" for r in results),
               "failed": sum(r["status"] == "failed" for r in results),
               "errors": sum(r["status"] == "error" for r in results),
               "wall_seconds": round(time.monotonic() - start, 1)}
    # the covergroups of the testplans a test was selected from (TESTS= narrows them too)
    chosen = {t.plan for t in tests}
    groups = [g for plan in plans if plan.name in chosen for g in plan.covergroups]
    cov = write_all(args.out, summary, results, groups)
    for name, g in cov["covergroups"].items():
        missed = f"; missed: {', '.join(g['missed'])}" if g["missed"] else ""
        print(f"  coverage {name}: {g['hit']}/{g['planned']} ({g['percent']} %){missed}")
    for r in results:
        if r["status"] != "passed":
            print(f"{r['status'].upper()} {r['run_id']}: {r['message']}\n  log: {r['log']}\n"
                  f"  rerun: {r['rerun']}")
    print(json.dumps(summary))
    print(f"wrote {args.out}/junit.xml, coverage.json, summary.json, report.html")
    return 0 if summary["passed"] == summary["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
