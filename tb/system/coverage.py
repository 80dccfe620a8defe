"""The system bench's functional coverage: covergroups sampled from the finished scenario
(the VMM's migration records, the scoreboard totals, the link counters and the faults the
channels injected), so the sampling needs no hook in the per-cycle code.

``sample_report(report, knobs)`` is called once per scenario by the test's report_phase;
the bin names are the testplan's (testplans/system.hjson).
"""

from __future__ import annotations

from tb.common.coverage import covergroup, cross

FLAG_SETS = ("precopy", "stop_copy_only")
ARCS = ("RUNNING->PRE_COPY", "PRE_COPY->STOP_COPY", "RUNNING->STOP_COPY",
        "STOP_COPY->STOP", "STOP->RUNNING(target)", "PRE_COPY->RUNNING(abort)",
        "STOP_COPY->PRE_COPY(refused)", "COMMIT->RUNNING(source, rollback)")
ABORT_FROM = ("PRE_COPY", "COMMIT")
FAULT_KINDS = ("bit_error", "drop", "duplicate", "delay", "link_down")
PHASES = ("MIG_BEGIN", "PRE_COPY_ROUND", "STOP_COPY_RESIDUAL", "SWITCHOVER", "COMMIT")
IRQ_AT_SWITCHOVER = ("pending x masked", "pending x unmasked")
HOLD_DEPTH = ("1", "2")
LINK = ("replay", "nak", "crc_error", "timeout")
DECISIONS = ("migrate", "held_back")

# Arcs a migration record takes, by (mode, result); the flag set is the mode's.
_ARCS_OF = {
    ("pre", "committed"): ARCS[0:2] + ARCS[3:5],
    ("stop", "committed"): ARCS[2:5],
    ("abort", "aborted"): (ARCS[0], ARCS[5]),
    ("pre", "aborted"): (ARCS[0], ARCS[1], ARCS[7]),
    ("stop", "aborted"): (ARCS[2], ARCS[7]),
}
# A directed fault of tb/system/phase_fault.py: its kind's and its phase's bin here.
_PHASE_FAULT_KIND = {"burst": "bit_error", "drop": "drop", "duplicate": "duplicate",
                     "delay": "delay", "down_short": "link_down", "down_long": "link_down"}
_PHASE_FAULT_PHASE = {"BEGIN": "MIG_BEGIN", "PRECOPY": "PRE_COPY_ROUND",
                      "RESIDUAL": "STOP_COPY_RESIDUAL", "SWITCHOVER": "SWITCHOVER",
                      "COMMIT": "COMMIT", "COMMIT_ACK": "COMMIT"}
# Which fault-injection counter proves a fault kind was active.
_INJECTED = {"bit_error": ("flipped_flits",), "drop": ("dropped",),
             "duplicate": ("duplicated",), "delay": ("delays",), "link_down": ("down_lost",)}


def groups():
    return {
        "system.vfio_arcs": covergroup("system.vfio_arcs", cross(FLAG_SETS, ARCS)),
        "system.abort_from": covergroup("system.abort_from", ABORT_FROM),
        "system.fault_phase": covergroup("system.fault_phase", cross(FAULT_KINDS, PHASES)),
        "system.irq_at_switchover": covergroup("system.irq_at_switchover",
                                               IRQ_AT_SWITCHOVER),
        "system.router_hold_depth": covergroup("system.router_hold_depth", HOLD_DEPTH),
        "system.link": covergroup("system.link", LINK),
        "system.vfmanager_decisions": covergroup("system.vfmanager_decisions", DECISIONS),
    }


def _phases(record: dict) -> list[str]:
    """The protocol phases a migration went through (a link fault active over the whole
    run was active in each of them)."""
    phases = ["MIG_BEGIN"]
    if record["precopy_rounds"]:
        phases.append("PRE_COPY_ROUND")
    if record["mode"] in ("pre", "stop") and record["bytes"]:
        phases += ["STOP_COPY_RESIDUAL", "SWITCHOVER", "COMMIT"]
    return phases


def _sample_faults(g, report: dict, knobs) -> None:
    injected = (report.get("link_faults") or {}).get("injected") or {}
    steady = [k for k in FAULT_KINDS if k != "link_down"
              and sum(injected.get(c, 0) for c in _INJECTED[k])]
    migrations = report["migrations"]
    for record in migrations:
        for kind in steady:
            for phase in _phases(record):
                g.sample(f"{kind} x {phase}")
    # link-down windows placed on a plan step: at its start, or as it commits
    for phase, spec in (("MIG_BEGIN", knobs.link_down_step),
                        ("COMMIT", knobs.link_down_commit)):
        if spec and injected.get("down_lost", 0):
            g.sample(f"link_down x {phase}")
    # directed faults, each placed in its phase (the bin counts only one that fired)
    for entry in (report.get("link_faults") or {}).get("phase_faults") or []:
        _, phase, kind = entry["fault"].split(":")
        if entry["fired"] and kind in _PHASE_FAULT_KIND:
            g.sample(f"{_PHASE_FAULT_KIND[kind]} x {_PHASE_FAULT_PHASE[phase]}")


def sample_report(report: dict, knobs) -> None:
    """Sample every system covergroup from one scenario's report."""
    g = groups()
    for record in report["migrations"]:
        flags = "stop_copy_only" if record["mode"] == "stop" else "precopy"
        for arc in _ARCS_OF.get((record["mode"], record["result"]), ()):
            g["system.vfio_arcs"].sample(f"{flags} x {arc}")
        if record["result"] == "aborted":
            g["system.abort_from"].sample("PRE_COPY" if record["mode"] == "abort" else "COMMIT")
    # a ":probe" step requests PRE_COPY in STOP_COPY mid-migration (the VMM checks it is
    # refused); invalid requests are no migration records, so the plan says where they were
    for step in (s for group in report["plan"].split(",") for s in group.split("+")):
        parts = step.split(":")
        if len(parts) == 3 and parts[2] == "probe":
            flags = "stop_copy_only" if parts[1] == "stop" else "precopy"
            g["system.vfio_arcs"].sample(f"{flags} x {ARCS[6]}")
    _sample_faults(g["system.fault_phase"], report, knobs)
    totals = report["totals"]
    if totals.get("remap_replays", 0) and knobs.irte_mask:
        g["system.irq_at_switchover"].sample("pending x masked")
    if knobs.storm_vfs and not knobs.irte_mask and totals.get("interrupts_delivered", 0):
        g["system.irq_at_switchover"].sample("pending x unmasked")
    depth = max((len(step.split("+")) for step in report["plan"].split(",") if step),
                default=0)
    for d in HOLD_DEPTH:
        g["system.router_hold_depth"].sample(d, depth >= int(d))
    link = report.get("link") or {}
    ports = report.get("link_ports") or {}
    g["system.link"].sample("replay", link.get("replays", 0) > 0)
    g["system.link"].sample("nak", link.get("naks", 0) > 0)
    g["system.link"].sample("crc_error", link.get("crc_errors", 0) > 0)
    g["system.link"].sample("timeout", sum(p.get("tx_timeouts", 0) for p in ports.values()) > 0)
    policy = report.get("policy")
    if policy:
        g["system.vfmanager_decisions"].sample("migrate", len(report.get("decisions", [])))
        g["system.vfmanager_decisions"].sample("held_back", sum(policy["held_back"].values()))
