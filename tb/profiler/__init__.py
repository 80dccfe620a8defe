"""Benches of hdl/profiler.py: the parts the amaranth.sim and the cocotb bench share.

- ``ProfilerParams`` / ``CONFIGS``: the configurations under test.
- ``Cycle`` and ``random_traffic``: what the profiler's ports see, cycle by cycle — requests
  and responses with legal (vf, tag) use (tags reused, sometimes in the very cycle their
  response goes out), events for VF ids that do not exist, busy bits, link words, snapshot
  pulses, and the snapshot-bank reads that follow each pulse while traffic goes on.
- ``reference_windows``: the independent reference. It works on whole requests (issue and
  response cycles), not on counters: latency = response cycle - request cycle,
  occupancy = the part of each request's outstanding interval inside the window, the
  occupancy peak from a per-cycle count of open intervals, the histogram by
  ``model.profiler.latency_bin``; then the documented saturation.
- ``read_back``: the register words read after each snapshot, as the same dicts.
- ``counter_snapshot`` / ``device_snapshot``: register words -> ``model.profiler``
  ``CounterSnapshot`` / ``DeviceSnapshot`` (what the VMM-side profiler consumes).

Timing contract used (hdl/profiler.py): a snapshot pulsed in cycle ``c`` closes the window
[previous pulse, c) and is readable from a read presented in ``c + 2``; ``rd_data`` in
cycle ``k + 1`` answers the read presented (``rd_en``) in ``k`` and holds until the next.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from model.config import Device
from model.profiler import DEFAULT_BINS, CounterSnapshot, DeviceSnapshot, latency_bin

ENV_PARAMS = "PROFILER_PARAMS"


def _bits_for(n: int) -> int:
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class ProfilerParams:
    """The constructor arguments of ``hdl.profiler.Profiler``."""
    n_vfs: int = 3
    tag_bits: int = 3
    latency_bits: int = 24
    n_bins: int = DEFAULT_BINS
    counter_bits: int = 32
    words_bits: int = 3
    link_word_bits: int = 2

    def build(self):
        from hdl.profiler import Profiler
        return Profiler(self.n_vfs, **{k: v for k, v in dataclasses.asdict(self).items()
                                       if k != "n_vfs"})

    @property
    def vf_bits(self) -> int:
        return _bits_for(self.n_vfs)

    @property
    def limit(self) -> int:
        return (1 << self.counter_bits) - 1

    def vf_regs(self) -> tuple[str, ...]:
        from hdl.profiler import vf_register_names
        return vf_register_names(self.n_bins)

    def device_regs(self) -> tuple[str, ...]:
        from hdl.profiler import PROFILER_DEVICE_REGS
        return PROFILER_DEVICE_REGS

    def to_env(self) -> dict[str, str]:
        return {ENV_PARAMS: json.dumps(dataclasses.asdict(self), sort_keys=True)}

    @classmethod
    def from_env(cls) -> ProfilerParams:
        text = os.environ.get(ENV_PARAMS)
        return cls(**json.loads(text)) if text else cls()


CONFIGS = {
    # 3 VFs: vf id 3 is representable and must be ignored; a small tag space reuses tags.
    "odd": ProfilerParams(),
    # 8-bit saturating counters, 5-bit wrapping latencies: both limits reached in a run.
    "narrow": ProfilerParams(n_vfs=2, tag_bits=2, latency_bits=5, n_bins=6, counter_bits=8,
                             words_bits=2, link_word_bits=1),
}


@dataclass
class Cycle:
    """The profiler's inputs in one cycle (``read``: the snapshot-bank read presented)."""
    req: tuple[int, int, int] | None = None   # (vf, tag, words)
    resp: tuple[int, int] | None = None       # (vf, tag)
    busy: tuple[int, int] = (0, 0)
    link: tuple[int, int] = (0, 0)
    vf_device: int = 0                        # bit v: VF v on the offload device
    slots_used: tuple[int, int] = (0, 0)
    snapshot: bool = False
    read: tuple[int, int] | None = None       # (row, index)

    def ports(self, p: ProfilerParams) -> dict[str, int]:
        """Values of the flattened top-level ports (the Verilog names)."""
        req, resp = self.req or (0, 0, 0), self.resp or (0, 0)
        lw, sw = p.link_word_bits, 8
        row, index = self.read or (0, 0)
        return {
            "req_seen__valid": int(self.req is not None), "req_seen__vf": req[0],
            "req_seen__tag": req[1], "req_seen__words": req[2],
            "resp_seen__valid": int(self.resp is not None), "resp_seen__vf": resp[0],
            "resp_seen__tag": resp[1],
            "busy": self.busy[0] | self.busy[1] << 1,
            "link_words": self.link[0] | self.link[1] << lw,
            "vf_device": self.vf_device,
            "slots_used": self.slots_used[0] | self.slots_used[1] << sw,
            "snapshot": int(self.snapshot), "rd_en": int(self.read is not None),
            "rd_vf": row, "rd_index": index,
        }


@dataclass
class Plan:
    """A run: its cycles, and which reads check what."""
    cycles: list[Cycle]
    checked: list[int] = field(default_factory=list)  # snapshot cycles whose bank is read
    zero_reads: list[int] = field(default_factory=list)  # cycles of reads that must give 0


def _read_list(p: ProfilerParams) -> list[tuple[int, int]]:
    reads = [(vf, i) for vf in range(p.n_vfs) for i in range(len(p.vf_regs()))]
    return reads + [(p.n_vfs, i) for i in range(len(p.device_regs()))]


def schedule_reads(p: ProfilerParams, cycles: list[Cycle]) -> Plan:
    """A plan that reads the whole bank after every snapshot of ``cycles`` (idle cycles are
    appended as needed); a snapshot whose reads would run into the next one is not read."""
    reads = _read_list(p)
    pulses = [c for c, cy in enumerate(cycles) if cy.snapshot]
    plan = Plan(list(cycles))
    for k, c in enumerate(pulses):
        last = c + 2 + len(reads)
        if k + 1 < len(pulses) and last > pulses[k + 1]:
            continue
        plan.cycles += [Cycle() for _ in range(last - len(plan.cycles))]
        for i, rd in enumerate(reads):
            if plan.cycles[c + 2 + i].read is not None:
                raise ValueError(f"cycle {c + 2 + i} already has a read")
            plan.cycles[c + 2 + i].read = rd
        plan.checked.append(c)
    return plan


def random_traffic(p: ProfilerParams, rng: random.Random, n_windows: int = 6,
                   req_prob: float = 0.5, resp_prob: float = 0.45,
                   extra_cycles: tuple[int, int] = (0, 120)) -> Plan:
    """``n_windows`` checked windows (plus back-to-back snapshots and unread windows) of
    random legal traffic; each checked snapshot is followed by the reads of its bank."""
    reads = _read_list(p)
    index_bits = _bits_for(max(len(p.vf_regs()), len(p.device_regs())))
    row_bits = _bits_for(p.n_vfs + 1)
    # Reads of rows/indices outside the map: 0.
    bad = [(p.n_vfs, len(p.device_regs()))] if len(p.device_regs()) < 1 << index_bits else []
    bad += [(0, len(p.vf_regs()))] if len(p.vf_regs()) < 1 << index_bits else []
    bad += [(p.n_vfs + 1, 0)] if p.n_vfs + 1 < 1 << row_bits else []

    # Snapshot cycles: a checked one leaves room for its reads before the next pulse.
    plan = Plan([])
    pulses: list[tuple[int, bool]] = []
    t = rng.randint(len(reads) // 2, len(reads) + 40)
    for k in range(n_windows):
        pulses.append((t, True))
        t += len(reads) + len(bad) + 3
        if k == 1:  # a window of one cycle, then one that is never read
            pulses += [(t, False), (t + 1, True)]
            t += 1 + len(reads) + len(bad) + 3
        t += rng.randint(*extra_cycles)
    end = t
    cycles = [Cycle() for _ in range(end)]
    for c, checked in pulses:
        cycles[c].snapshot = True
        if checked:
            plan.checked.append(c)
            for i, rd in enumerate(reads + bad):
                cycles[c + 2 + i].read = rd
            plan.zero_reads += [c + 2 + len(reads) + i for i in range(len(bad))]
    for c in range(2):  # the bank reads 0 before the first snapshot
        cycles[c].read = (0, 1)
        plan.zero_reads.append(c)

    n_ids = 1 << p.vf_bits
    tags = 1 << p.tag_bits
    open_: dict[tuple[int, int], int] = {}  # (vf, tag) -> issue cycle, for legal traffic only
    vf_device = 0
    slots = [rng.randrange(256), rng.randrange(256)]
    for c, cy in enumerate(cycles):
        freed = None
        ready = [key for key, t0 in open_.items() if t0 < c]
        if ready and rng.random() < resp_prob:
            # Mostly recent requests, sometimes the oldest: long latencies span windows.
            key = min(ready, key=open_.get) if rng.random() < 0.1 else rng.choice(ready)
            del open_[key]
            cy.resp, freed = key, key
        elif rng.random() < 0.03 and n_ids > p.n_vfs:
            cy.resp = (rng.randrange(p.n_vfs, n_ids), rng.randrange(tags))  # ignored
        if rng.random() < req_prob:
            vf = rng.randrange(n_ids) if rng.random() < 0.05 else rng.randrange(p.n_vfs)
            if vf >= p.n_vfs:
                cy.req = (vf, rng.randrange(tags), rng.randrange(1 << p.words_bits))
            else:
                free = [tg for tg in range(tags) if (vf, tg) not in open_]
                if freed is not None and freed[0] == vf and rng.random() < 0.5:
                    free = [freed[1]]  # reuse the tag answered in this very cycle
                if free:
                    tag = rng.choice(free)
                    open_[(vf, tag)] = c
                    cy.req = (vf, tag, rng.randrange(1 << p.words_bits))
        if rng.random() < 0.02:
            vf_device = rng.randrange(1 << p.n_vfs)
        if rng.random() < 0.02:
            slots = [rng.randrange(256), rng.randrange(256)]
        cy.busy = (int(rng.random() < 0.6), int(rng.random() < 0.3))
        cy.link = (rng.randrange(1 << p.link_word_bits), rng.randrange(1 << p.link_word_bits))
        cy.vf_device, cy.slots_used = vf_device, (slots[0], slots[1])
    plan.cycles = cycles
    return plan


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
