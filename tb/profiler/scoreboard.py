"""The profiler bench's reference: expected snapshot windows computed from the inputs,
the read-back and its comparison, and the snapshots for model.profiler."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from model.config import Device
from model.profiler import CounterSnapshot, DeviceSnapshot, latency_bin

from .configs import ProfilerParams
from .stimulus import Cycle, Plan


@dataclass
class Window:
    """Expected or read registers of one snapshot: ``vfs[v]`` and ``device`` by name."""
    end: int
    vfs: list[dict[str, int]]
    device: dict[str, int]


def reference_windows(p: ProfilerParams, cycles: Sequence[Cycle]) -> list[Window]:
    """Every window closed in ``cycles``, from whole requests (see the module docstring)."""
    n, limit, n_cycles = p.n_vfs, p.limit, len(cycles)
    open_: dict[tuple[int, int], tuple[int, int]] = {}
    requests: list[tuple[int, int, int | None, int]] = []  # (vf, issue, response or None, words)
    for c, cy in enumerate(cycles):
        if cy.resp is not None and cy.resp[0] < n:
            if cy.resp not in open_:
                raise ValueError(f"cycle {c}: response {cy.resp} to no request")
            t0, words = open_.pop(cy.resp)
            requests.append((cy.resp[0], t0, c, words))
        if cy.req is not None and cy.req[0] < n:
            key = cy.req[:2]
            if key in open_:
                raise ValueError(f"cycle {c}: tag {key} reused while outstanding")
            open_[key] = (c, cy.req[2])
    requests += [(key[0], t0, None, words) for key, (t0, words) in open_.items()]

    # Outstanding requests per VF per cycle, from a difference array of the intervals.
    diff = [[0] * (n_cycles + 1) for _ in range(n)]
    for vf, t0, t1, _ in requests:
        diff[vf][t0] += 1
        diff[vf][n_cycles if t1 is None else t1] -= 1
    outstanding = []
    for vf in range(n):
        run, row = 0, []
        for c in range(n_cycles):
            run += diff[vf][c]
            row.append(run)
        outstanding.append(row)

    windows, start = [], 0
    for end in (c for c, cy in enumerate(cycles) if cy.snapshot):
        vfs = []
        for vf in range(n):
            mine = [r for r in requests if r[0] == vf]
            done = [r for r in mine if r[2] is not None and start <= r[2] < end]
            lats = [(t1 - t0) % (1 << p.latency_bits) for _, t0, t1, _ in done]
            hist = [0] * p.n_bins
            for lat in lats:
                hist[latency_bin(lat, p.n_bins)] += 1
            occupancy = sum(max(0, min(end if t1 is None else t1, end) - max(t0, start))
                            for _, t0, t1, _ in mine)
            regs = {"device": cy_bit(cycles[end].vf_device, vf), "requests": len(done),
                    "bytes": 4 * sum(r[3] for r in done), "latency_sum": sum(lats),
                    "latency_max": max(lats, default=0), "occupancy": occupancy}
            regs.update({f"histogram[{b}]": count for b, count in enumerate(hist)})
            regs = {k: v if k == "device" else min(v, limit) for k, v in regs.items()}
            regs["occupancy_max"] = max(outstanding[vf][start:end], default=0)
            vfs.append(regs)
        device = {"window": min(end - start, limit)}
        for d in Device:
            device[f"busy[{d}]"] = min(sum(cy.busy[d] for cy in cycles[start:end]), limit)
        for i in range(2):
            device[f"link_words[{i}]"] = min(sum(cy.link[i] for cy in cycles[start:end]), limit)
        for d in Device:
            device[f"slots_used[{d}]"] = cycles[end].slots_used[d]
        windows.append(Window(end, vfs, device))
        start = end
    return windows


def cy_bit(mask: int, bit: int) -> int:
    return mask >> bit & 1


def read_back(p: ProfilerParams, plan: Plan, rd_data: Sequence[int]) -> list[Window]:
    """The checked windows as read: ``rd_data[k]`` answers the read presented in cycle k."""
    vf_regs, dev_regs = p.vf_regs(), p.device_regs()
    windows = []
    for end in plan.checked:
        vfs = [dict.fromkeys(vf_regs, None) for _ in range(p.n_vfs)]
        device = dict.fromkeys(dev_regs, None)
        for k in range(end + 2, len(plan.cycles)):
            rd = plan.cycles[k].read
            if rd is None or plan.cycles[k].snapshot:
                break
            row, index = rd
            if row < p.n_vfs and index < len(vf_regs):
                vfs[row][vf_regs[index]] = rd_data[k]
            elif row == p.n_vfs and index < len(dev_regs):
                device[dev_regs[index]] = rd_data[k]
        windows.append(Window(end, vfs, device))
    return windows


def compare(p: ProfilerParams, plan: Plan, rd_data: Sequence[int]) -> list[str]:
    """Differences between the reads and the reference (empty: all good)."""
    expected = {w.end: w for w in reference_windows(p, plan.cycles)}
    errors = []
    for got in read_back(p, plan, rd_data):
        want = expected[got.end]
        for vf in range(p.n_vfs):
            for name, value in want.vfs[vf].items():
                if got.vfs[vf][name] != value:
                    errors.append(f"snapshot @{got.end} VF {vf} {name}: read "
                                  f"{got.vfs[vf][name]}, expected {value}")
        for name, value in want.device.items():
            if got.device[name] != value:
                errors.append(f"snapshot @{got.end} device {name}: read {got.device[name]}, "
                              f"expected {value}")
    for k in plan.zero_reads:
        if rd_data[k] != 0:
            errors.append(f"read {plan.cycles[k].read} in cycle {k}: {rd_data[k]}, expected 0")
    return errors


def counter_snapshot(vf: int, regs: Mapping[str, int]) -> CounterSnapshot:
    """One VF's registers (by ``vf_register_names``) as the model's ``CounterSnapshot``."""
    values: dict[str, object] = {}
    for f in dataclasses.fields(CounterSnapshot):
        if f.name == "vf":
            values["vf"] = vf
        elif f.name == "histogram":
            n_bins = sum(1 for name in regs if name.startswith("histogram["))
            values["histogram"] = tuple(regs[f"histogram[{b}]"] for b in range(n_bins))
        elif f.name == "device":
            values["device"] = Device(regs["device"])
        else:
            values[f.name] = regs[f.name]
    return CounterSnapshot(**values)


def device_snapshot(regs: Mapping[str, int], slots: tuple[int, int],
                    link_words_per_cycle: float) -> DeviceSnapshot:
    """The device row's registers as the model's ``DeviceSnapshot``; ``slots`` and
    ``link_words_per_cycle`` are configuration (``hdl.profiler.CONFIG_FIELDS``)."""
    config = {"slots": tuple(slots), "link_words_per_cycle": link_words_per_cycle}
    values: dict[str, object] = {}
    for f in dataclasses.fields(DeviceSnapshot):
        if f.name in config:
            values[f.name] = config[f.name]
        elif isinstance(f.default, tuple):
            values[f.name] = tuple(regs[f"{f.name}[{i}]"] for i in range(len(f.default)))
        else:
            values[f.name] = regs[f.name]
    return DeviceSnapshot(**values)
