"""Link goodput and TC_IO latency, measured on the generated Verilog (``GoodputAtBer0``).

    python -m tb.bench.link [--sim verilator|icarus] [--bers 0,1e-6,...] [--messages N]
                            [--config default] [--seed N] [--out build/bench/link.json]

Port a streams STATE_DATA messages of the default 64-word chunk (67 words) to port b on
TC_MIG, one fresh reset per bit-error rate, with the fault agent flipping bits of both wires
(flits and sop bits) at that rate. ``goodput_ratio`` = migration payload words delivered /
(flits port a put on its wire x words per flit): framing, DLLPs and replays all count
against it. The curve repeats the measurement at each BER (a quarter of the messages from
3e-4 on). ``io_latency_cycles``: 3-word TC_IO messages every 97 cycles, first beat accepted
at a to last beat delivered at b, on an idle link and while a migration streams.

Writes ``build/bench/link.json`` and exits 1 when goodput at BER 0 is below 0.90 (default
configuration) or the measurement failed, 2 on bad arguments or a missing simulator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from tb.bench.cli import usage_error
from tb.common.runner import (
    BUILD,
    SimulatorError,
    check_simulator,
    default_simulator,
    run_figure,
)
from tb.link import CONFIGS, config_env, link_pair

BENCH_OUT = BUILD / "bench" / "link.json"
DEFAULT_BERS = (0.0, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)
DEFAULT_MESSAGES = 300
GOODPUT_TARGET = 0.90
BENCH_SEED = 1


def measure_link(sim: str = "verilator", bers=DEFAULT_BERS, messages: int = DEFAULT_MESSAGES,
                 config: str = "default", seed: int = BENCH_SEED) -> dict:
    """Run the cocotb goodput bench; returns the link.json document (RuntimeError if the
    simulation or one of its checks failed)."""
    if not bers or bers[0] != 0:
        raise ValueError("the first BER point must be 0 (it gives goodput_ratio)")
    env = {**config_env(config), "LINK_BENCH_BERS": ",".join(repr(float(b)) for b in bers),
           "LINK_BENCH_MESSAGES": str(messages)}
    doc = run_figure(sim, f"link_{config}", lambda: link_pair(config), "tb.link.test_link",
                     "GoodputAtBer0", "LINK_BENCH_OUT", "link goodput bench",
                     parameters=CONFIGS[config], extra_env=env, seed=seed)
    doc.update({"sim": sim, "seed": seed})
    return doc


def format_table(doc: dict) -> str:
    lines = [f"{'BER':>8} {'goodput':>8} {'words/cycle':>11} {'flits':>7} {'replays':>8} "
             f"{'NAKs':>5} {'timeouts':>8} {'bit flips':>9}"]
    for p in doc["curve"]:
        lines.append(f"{p['ber']:>8.0e} {p['goodput_ratio']:>8.4f} "
                     f"{p['payload_words_per_cycle']:>11.4f} {p['flits']:>7} {p['replays']:>8} "
                     f"{p['naks']:>5} {p['timeouts']:>8} {p['bit_flips']:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tb.bench.link",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim", default=default_simulator())
    parser.add_argument("--bers", default=",".join(f"{b:g}" for b in DEFAULT_BERS),
                        help="bit-error rates, the first must be 0 (default %(default)s)")
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES,
                        help="STATE_DATA messages per BER point (default %(default)s)")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="default")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED", BENCH_SEED)))
    parser.add_argument("--out", type=Path, default=BENCH_OUT)
    args = parser.parse_args(argv)
    try:
        sim = check_simulator(args.sim)
        bers = [float(b) for b in args.bers.split(",")]
        if bers[0] != 0 or any(not 0 <= b < 1 for b in bers) or args.messages < 1:
            raise ValueError("--bers must start with 0 and hold rates in [0, 1); "
                             "--messages must be >= 1")
    except (SimulatorError, ValueError) as exc:
        return usage_error(exc)
    print(f"link bench on {sim}: config {args.config}, {args.messages} STATE_DATA messages "
          f"per point, BERs {', '.join(f'{b:g}' for b in bers)}", flush=True)
    start = time.monotonic()
    try:
        doc = measure_link(sim, bers, args.messages, args.config, args.seed)
    except RuntimeError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(format_table(doc))
    lat = doc.get("io_latency_cycles", {})
    if lat:
        print(f"TC_IO latency (cycles): idle link mean {lat['idle_link']['mean']} max "
              f"{lat['idle_link']['max']}; during migration mean "
              f"{lat['during_migration']['mean']} max {lat['during_migration']['max']} "
              f"(mig_share {lat['mig_share']})")
    print(f"goodput_ratio at BER 0: {doc['goodput_ratio']:.4f} (framing bound "
          f"{doc['ideal_goodput_ratio']:.4f}) -> {args.out}  [{time.monotonic() - start:.0f} s]")
    if args.config == "default" and doc["goodput_ratio"] < GOODPUT_TARGET:
        print(f"FAILED: goodput_ratio {doc['goodput_ratio']:.4f} < {GOODPUT_TARGET}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
