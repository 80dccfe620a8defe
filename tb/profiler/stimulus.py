"""Stimulus of the profiler bench: per-cycle inputs, seeded random traffic and the
snapshot-bank read schedule."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .configs import ProfilerParams, _bits_for


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
