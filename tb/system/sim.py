"""`make sim`: the full-system scenario on Verilator or Icarus, with a report.

    python -m tb.system.sim --sim verilator --seed 1 [--vfs 8]
        [--policy vfmanager|seed|static] [--policy-params NAME=VALUE,...] [--trace FILE]
        [--duration CYCLES] [--window CYCLES] [--load X]       the closed loop (default)
    python -m tb.system.sim --policy plan [--migrations N] [--plan ...]   a scripted plan
    link faults, either way: [--ber 1e-5] [--drop-rate 2e-4] [--dup-rate R] [--link-down S:C]

By default the VF Manager places VFs from the hardware profiler's windows while the
phase-changing workload (or ``--trace``) runs (tb/system/closed_loop.py); ``--policy plan``
(or ``--plan``) runs a scripted list of migrations instead.  Builds the system top once per
configuration (tb/common/runner.py), runs the cocotb test
``tb.system.test_system`` with the scenario knobs in ``VFMIG_*`` environment variables,
shows its progress lines while it runs, prints a short report and writes
``build/sim/report.json``.  The link between the devices runs with faults by default (bit
errors at ``DEFAULT_BER`` and a few dropped flits), which its CRC and replay must repair
without loss: the report's "link" section shows the replays it took.  Exits 1 on any
mismatch, lost response, VMM check failure, failing cocotb test or missing report; 2 on bad
arguments or a missing simulator.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

from model.config import SystemConfig
from model.presets import load_config
from model.regmap import DowntimePhase
from model.state import ImageLayout
from tb.common.runner import (
    BUILD,
    SimulatorError,
    check_simulator,
    check_waves,
    default_simulator,
    waves_file,
)

from .closed_loop import make_rtl_policy, make_source, parse_params
from .env import Knobs, config_to_json
from .phase_fault import KINDS, PHASES, parse_faults
from .vmm import check_plan, default_plan, format_plan, parse_plan

TEST_MODULE = "tb.system.test_system"
DEFAULT_BER = 1e-5
DEFAULT_DROP_RATE = 2e-4


def make_config(vfs: int = 8, host_slots: int | None = None, offload_slots: int = 4,
                mem_words: int = 256, **kwargs) -> SystemConfig:
    host_slots = max(8, vfs) if host_slots is None else host_slots
    return SystemConfig(n_vfs=vfs, host_slots=host_slots, offload_slots=offload_slots,
                        layout=ImageLayout(mem_words=mem_words), **kwargs)


def run_system(sim: str, config: SystemConfig, knobs: Knobs, testcase: str | None = None,
               echo=None, fault_inject: str | None = None) -> Path:
    """Build and run the scenario; returns the results XML.  ``echo`` gets each progress line
    while the simulation runs; ``fault_inject`` builds the top with that deliberate fault
    (``hdl.system.System``'s ``_fault_inject``, a build of its own)."""
    from hdl.system import System
    from tb.common.runner import run_tests

    knobs.sim = sim
    if knobs.progress:
        Path(knobs.progress).parent.mkdir(parents=True, exist_ok=True)
        Path(knobs.progress).write_text("")
    env = {"VFMIG_CONFIG": config_to_json(config), **knobs.to_env()}
    stop = threading.Event()
    tail = None
    if echo and knobs.progress:
        tail = threading.Thread(target=_follow, args=(Path(knobs.progress), echo, stop),
                                daemon=True)
        tail.start()
    testcase = testcase or ("ClosedLoopScenario" if knobs.policy else "SystemScenario")
    try:
        parameters = config.to_dict()
        if fault_inject:
            parameters["fault_inject"] = fault_inject
        return run_tests(sim, "system", lambda: System(config, _fault_inject=fault_inject),
                         TEST_MODULE, parameters=parameters, testcase=testcase, extra_env=env,
                         seed=knobs.seed)
    finally:
        stop.set()
        if tail:
            tail.join()


def _follow(path: Path, echo, stop: threading.Event) -> None:
    offset = 0
    while True:
        done = stop.is_set()
        if path.exists():
            with open(path) as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[:chunk.rfind("\n") + 1]
            offset += len(complete)
            for line in complete.splitlines():
                echo(line)
        if done:
            return
        time.sleep(0.2)


def format_breakdown(breakdown: dict[str, int]) -> str:
    """``drain/copy/switchover/commit/release`` cycles, as the DOWNTIME_* registers say."""
    return "/".join(str(breakdown.get(p.name.lower(), 0)) for p in DowntimePhase)


def format_report(report: dict) -> str:
    lines = [f"{'#':>2} {'vf':>3} {'from':>8} {'to':>8} {'result':>10} {'rounds':>6} "
             f"{'bytes':>7} {'downtime':>9} {'total':>7}  drain/copy/switchover/commit/release"]
    for i, m in enumerate(report["migrations"], 1):
        lines.append(f"{i:>2} {m['vf']:>3} {m['from']:>8} {m['to']:>8} {m['result']:>10} "
                     f"{m['precopy_rounds']:>6} {m['bytes']:>7} {m['downtime_cycles']:>9} "
                     f"{m['total_cycles']:>7}  {format_breakdown(m.get('downtime_breakdown', {}))}")
    t = report["totals"]
    committed = [m for m in report["migrations"] if m["result"] == "committed"]
    directions = sorted({f"{m['from']}->{m['to']}" for m in committed})
    lines += [
        f"committed {len(committed)} ({', '.join(directions) or 'none'}), aborted "
        f"{sum(m['result'] == 'aborted' for m in report['migrations'])}",
        f"requests {t['requests']}, responses checked {t['responses_checked']}, mismatches "
        f"{t['mismatches']} (image {t.get('image_mismatches', 0)}), lost {t['lost']}, "
        f"duplicates {t.get('duplicates', 0)}, reordered {t.get('reordered', 0)}",
        f"interrupts raised {t.get('interrupts_raised', 0)}, delivered "
        f"{t.get('interrupts_delivered', 0)}, blocked {t.get('interrupts_blocked', 0)} "
        f"(spoof attempts {t.get('spoof_attempts', 0)}), duplicated "
        f"{t.get('interrupts_duplicated', 0)}, lost {t.get('interrupts_lost', 0)}, errors "
        f"{t.get('irq_errors', 0) + t.get('irq_check_errors', 0)}; VMM problems "
        f"{t.get('vmm_problems', 0)}",
        f"{report.get('cycles', 0)} cycles in {report.get('wall_seconds', 0)} s of simulation",
    ]
    link, faults = report.get("link"), (report.get("link_faults") or {})
    if link:
        injected = faults.get("injected") or {}
        lines.insert(-1, "link: " + ", ".join(f"{k} {v}" for k, v in link.items())
                     + " (injected: " + ", ".join(f"{k} {v}" for k, v in injected.items()
                                                  if k != "flits" and v) + ")")
    policy = report.get("policy")
    if policy:
        lines += [f"policy {policy['name']}: {policy['windows']} windows of {policy['window']} "
                  f"cycles, {policy['requests']} workload requests, mean latency "
                  f"{policy['mean_latency']}, p99 {policy['p99_latency']} cycles, throughput "
                  f"{policy['throughput']} B/cycle, {policy['migrations']} migrations, "
                  f"{policy['thrash']} thrash"]
        for d in report.get("decisions", []):
            lines.append(f"  cycle {d['issued']:>7}: VF {d['vf']} {d['from']}->{d['to']} "
                         f"{d['result']}: {d['reason']}")
    return "\n".join(lines)


def report_failures(report: dict) -> list[str]:
    t = report["totals"]
    bad = [f"{name} = {t.get(name, 0)}" for name in
           ("mismatches", "lost", "duplicates", "reordered", "irq_errors", "vmm_problems")
           if t.get(name, 0)]
    if not report.get("passed", False):
        bad.append("the scenario reported failure")
    return bad


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tb.system.sim", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", default=default_simulator(), help="verilator (default) or "
                        "icarus; the SIM environment variable sets the default")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--config", default="", help="a preset (default, small) or a JSON "
                        "file of SystemConfig fields, instead of --vfs, --mem-words and "
                        "the slot counts")
    parser.add_argument("--vfs", type=int, default=None, help="number of VFs (default 8)")
    parser.add_argument("--policy", default=None, help="vfmanager (default), seed, static: "
                        "the closed loop; plan: a scripted list of migrations")
    parser.add_argument("--policy-params", default="", help="policy parameters, e.g. "
                        "'cooldown=30000,link_budget=0.3'")
    parser.add_argument("--workload", default=Knobs.workload, help="closed loop: showcase "
                        "(default: a VF per placement rule) or phase-mix (docs/workload.md)")
    parser.add_argument("--trace", default="", help="closed loop: a workload trace file "
                        "(docs/workload.md) instead of --workload")
    parser.add_argument("--duration", type=int, default=Knobs.duration,
                        help="closed loop: workload cycles")
    parser.add_argument("--window", type=int, default=Knobs.window,
                        help="closed loop: profiler window in cycles")
    parser.add_argument("--load", type=float, default=Knobs.load,
                        help="closed loop: phase-mix load factor (default: the host 80 %% "
                        "busy with every VF on it)")
    parser.add_argument("--migrations", type=int, default=None,
                        help="migrations in the default plan (truncate or add random ones)")
    parser.add_argument("--plan", default="", help="explicit plan, e.g. "
                        "'0:pre,1:abort,2:invalid,0:stop:probe' (modes pre, stop, abort, "
                        "invalid; ':probe' adds an illegal request mid-migration)")
    parser.add_argument("--mem-words", type=int, default=None,
                        help="VF memory words (default 256)")
    parser.add_argument("--host-slots", type=int, default=None)
    parser.add_argument("--offload-slots", type=int, default=None, help="(default 4)")
    parser.add_argument("--idle", type=float, default=Knobs.idle_prob,
                        help="request-stream idle probability per cycle")
    parser.add_argument("--ber", type=float, default=DEFAULT_BER,
                        help=f"link bit error rate, both wires (default {DEFAULT_BER})")
    parser.add_argument("--drop-rate", type=float, default=DEFAULT_DROP_RATE,
                        help=f"link flits dropped (default {DEFAULT_DROP_RATE})")
    parser.add_argument("--dup-rate", type=float, default=0.0, help="link flits duplicated")
    parser.add_argument("--burst-rate", type=float, default=0.0,
                        help="link flits hit by an 8-bit error burst")
    parser.add_argument("--link-down", default="", help="link-down windows START:CYCLES,... "
                        "(cycles from the start of the run, both wires)")
    parser.add_argument("--phase-fault", default="", help="plan: STEP:PHASE:KIND,... a fault "
                        f"as step STEP's migration enters PHASE ({', '.join(PHASES)}); KIND "
                        f"{', '.join(KINDS)} (docs/fault_matrix.md)")
    parser.add_argument("--report", default=str(BUILD / "sim" / "report.json"))
    return parser


def _config(args) -> SystemConfig:
    sizes = {"vfs": args.vfs, "host_slots": args.host_slots,
             "offload_slots": args.offload_slots, "mem_words": args.mem_words}
    given = {name: value for name, value in sizes.items() if value is not None}
    if args.config:
        if given:
            raise ValueError(f"--config {args.config} sets the sizes: leave out "
                             f"{', '.join('--' + n.replace('_', '-') for n in given)}")
        return load_config(args.config)
    return make_config(**given)


def _plan_and_config(args, policy: str) -> tuple[SystemConfig, list]:
    """The configuration and plan the arguments ask for, every knob checked
    (ValueError, OSError: one line each)."""
    config = _config(args)
    Knobs(ber=args.ber, drop_rate=args.drop_rate, dup_rate=args.dup_rate,
          burst_rate=args.burst_rate, link_down=args.link_down).link_faults()  # checks
    if policy == "plan":
        steps = (parse_plan(args.plan) if args.plan
                 else default_plan(config, args.migrations, random.Random(args.seed)))
        check_plan(steps, config)
        for fault in parse_faults(args.phase_fault):
            if fault.step >= len(steps):
                raise ValueError(f"--phase-fault {fault}: the plan has no step "
                                 f"{fault.step} ({len(steps)} steps)")
    else:
        if args.phase_fault:
            raise ValueError("--phase-fault needs a plan (--plan or --policy plan)")
        steps = []
        for name, value in (("duration", args.duration), ("window", args.window)):
            if value < 1:
                raise ValueError(f"--{name} must be a positive number of cycles, not {value}")
        if args.window > args.duration:
            raise ValueError(f"--window {args.window} is longer than --duration "
                             f"{args.duration}")
        make_rtl_policy(policy, config, args.window, parse_params(args.policy_params))
        make_source(config, args.duration, args.seed, args.trace, load=args.load,
                    workload=args.workload)
    return config, steps


def _outcome(results, report_path: Path, wall: float) -> tuple[list[str], Path | None]:
    """Read the run's cocotb results and report (adding its wall time and, for a
    closed loop, its timeline picture), print the report; returns (failures,
    timeline)."""
    failures, timeline = [], None
    if results is not None:
        from cocotb_tools.check_results import get_results
        try:
            tests, failed = get_results(Path(results))
            if failed or not tests:
                failures.append(f"{failed} of {tests} cocotb tests failed (log: "
                                f"{Path(results).parent / 'sim.log'})")
        except RuntimeError as exc:
            failures.append(str(exc))
    else:
        failures.append("no cocotb results")
    if not report_path.exists():
        failures.append(f"no report at {report_path}")
    else:
        report = json.loads(report_path.read_text())
        report["wall_seconds_total"] = round(wall, 1)
        if "placements" in report:   # a closed-loop run: its picture
            from .timeline import draw
            timeline = draw(report, report_path.with_name("timeline.png"))
            report["timeline"] = str(timeline)
        report_path.write_text(json.dumps(report, indent=2) + "\n")
        print()
        print(format_report(report))
        failures += report_failures(report)
        for text in report.get("problems", [])[:10]:
            print(f"  problem: {text}")
    return failures, timeline


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    policy = args.policy or ("plan" if args.plan or args.migrations is not None
                             else "vfmanager")
    try:
        config, steps = _plan_and_config(args, policy)
        sim = check_simulator(args.sim)
        waves = check_waves(sim)
    except (SimulatorError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    report_path = Path(args.report).resolve()
    report_path.unlink(missing_ok=True)
    report_path.with_name("timeline.png").unlink(missing_ok=True)
    knobs = Knobs(seed=args.seed, plan=format_plan(steps),
                  migrations=-1 if args.migrations is None else args.migrations,
                  idle_prob=args.idle, report=str(report_path), ber=args.ber,
                  drop_rate=args.drop_rate, dup_rate=args.dup_rate, burst_rate=args.burst_rate,
                  link_down=args.link_down, phase_faults=args.phase_fault,
                  allow_rollback=int(bool(args.phase_fault)),
                  progress=str(report_path.parent / "progress.log"),
                  policy="" if policy == "plan" else policy, policy_params=args.policy_params,
                  trace=str(Path(args.trace).resolve()) if args.trace else "",
                  duration=args.duration, window=args.window, load=args.load,
                  workload=args.workload)
    what = (f"plan {format_plan(steps)}" if policy == "plan" else
            f"policy {policy}, {args.trace or args.workload + ' workload'}, "
            f"{args.duration} cycles")
    print(f"vfmig sim: {sim}, seed {args.seed}, {config.n_vfs} VFs "
          f"(host {config.host_slots} slots, offload {config.offload_slots}), "
          f"{config.layout.image_words}-word images; {what}; link BER "
          f"{args.ber:g}, drops {args.drop_rate:g}, duplicates {args.dup_rate:g}", flush=True)
    print("building (once per configuration) and running ..."
          + (" with waves (WAVES=1: slower)" if waves else ""), flush=True)
    start = time.monotonic()
    results = None
    try:
        results = run_system(sim, config, knobs, echo=lambda line: print("  " + line, flush=True))
    except SystemExit as exc:  # the cocotb runner exits when the simulator itself fails
        print(f"error: the simulator failed (exit {exc.code}); see build/sim_build/*/runs",
              file=sys.stderr)
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    wall = time.monotonic() - start

    failures, timeline = _outcome(results, report_path, wall)
    print(f"wall time {wall:.0f} s (build + simulation); report: {report_path}")
    if timeline:
        print(f"timeline: {timeline}")
    wave = waves_file(results) if waves and results is not None else None
    if wave:
        print(f"waves: {wave} (gtkwave {wave}, or surfer {wave})")
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print("PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
