"""A transaction-level simulator of the whole system, for many VFs and long runs (docs/design.md).

It runs the same profiler (``model.profiler``) and policies (``model.manager``) as the RTL
closed loop, on workloads of 64 to 1024 VFs and millions of requests, event by event: no
per-cycle loop. Times are integer cycles.

What it models (``FastSimConfig`` holds the numbers):

- **Devices.** Each device's VF unit serves one request at a time, first come first served:
  a request of ``w`` words holds it ``latency + cycles_per_word*(w-1)`` cycles. Contention
  is queueing on a device (Lindley's recursion: start = max(arrival, unit free)).
- **Link.** Requests of offload VFs cross the link (one FIFO per direction,
  ``link_words_per_cycle``, plus ``link_latency`` per crossing): ``header_words`` each way,
  the payload toward the device for WRITE/ADD and back for READ/ADD. While a migration
  copies in a direction, I/O there keeps ``1 - migration_link_share`` of the link.
- **Migrations** (one at a time per direction, as the migration engines; further ones
  queue): the target slot is reserved at issue. After ``begin_cycles`` (MIG_BEGIN /
  MIG_ACCEPT), pre-copy sends the whole image in chunks
  (``chunk_overhead_words`` per STATE_DATA) at the bandwidth I/O left in the last window
  (at least the migration share), then the blocks the VF really dirtied during the round,
  round after round, until at most ``precopy_threshold_blocks`` are dirty or
  ``max_precopy_rounds`` rounds ran. Then the VF is held (its new requests wait), its
  in-flight requests drain, the residual blocks and the CSR/MSI-X/PBA words are sent, and
  after ``handshake_cycles`` (SWITCHOVER, COMMIT, COMMIT_ACK) the VF runs at the target:
  the held requests are released there, the source slot is freed. Downtime = hold to
  release, as the RTL's DOWNTIME register.
- **Profiler windows.** Every ``window`` cycles the counters of the closed window become
  ``CounterSnapshot``s and a ``DeviceSnapshot`` (a request counts in the window it
  completes in), the profiler analyses them and the policy decides; migrations it asks for
  start at once (or queue behind the engine's current one).

``run(config, source, policy)`` returns a ``SimResult``: mean and p99 request latency
(exact, over every request), throughput, migrations, thrash (a VF moved back less than
``thrash_window`` cycles after its previous move), the placements per window and every
migration with the policy's reason.
"""

from __future__ import annotations

import heapq
import math
import time
from array import array
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from .common import check_int, check_number
from .config import Device, SystemConfig
from .manager import Decision, MigrationOutcome, Policy, SystemModel, SystemView
from .profiler import CounterSnapshot, DeviceSnapshot, Profiler
from .state import ImageLayout, Op
from .workload import Source

_ARRIVAL, _WINDOW, _ROUND_END, _COMMIT = range(4)
_READ, _WRITE, _ADD, _NOTIFY = (int(o) for o in (Op.READ, Op.WRITE, Op.ADD, Op.NOTIFY))


@dataclass(frozen=True)
class FastSimConfig:
    """The simulated system. ``host_slots`` None means one per VF (every VF starts on the
    host, as in the RTL)."""
    n_vfs: int = 256
    host_slots: int | None = None
    offload_slots: int = 32
    host_latency: int = 12
    offload_latency: int = 3
    cycles_per_word: int = 1
    link_words_per_cycle: int = 1
    link_latency: int = 4
    header_words: int = 2
    migration_link_share: float = 0.5
    layout: ImageLayout = field(default_factory=ImageLayout)
    chunk_words: int = 64
    chunk_overhead_words: int = 3
    round_overhead_words: int = 4
    precopy_threshold_blocks: int = 2
    max_precopy_rounds: int = 8
    begin_cycles: int = 40
    handshake_cycles: int = 50
    window: int = 20_000
    hist_bins: int = 16
    thrash_window: int = 100_000

    def __post_init__(self):
        check_int("FastSimConfig", "n_vfs", self.n_vfs, 1)
        if self.host_slots is None:
            object.__setattr__(self, "host_slots", self.n_vfs)
        lows = {"host_slots": self.n_vfs, "offload_slots": 0, "host_latency": 1,
                "offload_latency": 1, "cycles_per_word": 0, "link_words_per_cycle": 1,
                "link_latency": 0, "header_words": 0, "chunk_words": 1,
                "chunk_overhead_words": 0, "round_overhead_words": 0,
                "precopy_threshold_blocks": 0, "max_precopy_rounds": 0, "begin_cycles": 0,
                "handshake_cycles": 0, "window": 1, "thrash_window": 0}
        for name, low in lows.items():
            check_int("FastSimConfig", name, getattr(self, name), low)
        check_int("FastSimConfig", "hist_bins", self.hist_bins, 2, 64)
        check_number("FastSimConfig", "migration_link_share", self.migration_link_share, 0, 1,
                     low_open=True, high_open=True)
        if not isinstance(self.layout, ImageLayout):
            raise ValueError(f"FastSimConfig.layout must be an ImageLayout, not "
                             f"{self.layout!r}")

    @classmethod
    def from_system(cls, config: SystemConfig, **overrides) -> FastSimConfig:
        """The fast model of an RTL configuration (``model.config.SystemConfig``)."""
        base = dict(n_vfs=config.n_vfs, host_slots=config.host_slots,
                    offload_slots=config.offload_slots, host_latency=config.host_latency,
                    offload_latency=config.offload_latency, layout=config.layout,
                    chunk_words=config.chunk_words,
                    precopy_threshold_blocks=config.precopy_threshold_blocks,
                    max_precopy_rounds=config.max_precopy_rounds)
        base.update(overrides)
        return cls(**base)

    def system_model(self, downtime_cycles: float | None = None) -> SystemModel:
        """What a policy should assume about this system."""
        lay = self.layout
        if downtime_cycles is None:
            downtime_cycles = (self.handshake_cycles + lay.meta_words
                               + self.chunk_overhead_words + self.round_overhead_words
                               + self.precopy_threshold_blocks
                               * (lay.block_words + self.chunk_overhead_words))
        return SystemModel(
            host_latency=self.host_latency, offload_latency=self.offload_latency,
            cycles_per_word=self.cycles_per_word,
            link_words_per_cycle=self.link_words_per_cycle, link_latency=self.link_latency,
            header_words=self.header_words, image_words=lay.image_words,
            chunk_words=self.chunk_words, chunk_overhead_words=self.chunk_overhead_words,
            migration_link_share=self.migration_link_share,
            downtime_cycles=float(downtime_cycles))

    def profiler(self) -> Profiler:
        return Profiler(self.host_latency, self.offload_latency, self.cycles_per_word)


@dataclass(frozen=True)
class MigrationRecord:
    """One committed migration (cycles) and the decision that asked for it."""
    vf: int
    source: Device
    target: Device
    issued: int
    started: int
    held: int
    committed: int
    downtime: int
    rounds: int
    words_sent: int
    thrash: bool
    reason: str

    def to_dict(self) -> dict:
        return {"vf": self.vf, "from": self.source.label, "to": self.target.label,
                "issued": self.issued, "started": self.started, "held": self.held,
                "committed": self.committed, "downtime": self.downtime, "rounds": self.rounds,
                "words_sent": self.words_sent, "thrash": self.thrash, "reason": self.reason}


def _percentile(sorted_values, q: float) -> float:
    """Nearest-rank quantile of sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values) - 1e-9))
    return float(sorted_values[rank - 1])


@dataclass
class SimResult:
    """The outcome of one run. Latencies in cycles, throughput in payload bytes per cycle
    from cycle 0 to the last response."""
    policy: str
    n_vfs: int
    requests: int
    issued: int
    mean_latency: float
    p99_latency: float
    max_latency: int
    throughput: float
    makespan: int
    migrations: int
    thrash: int
    mean_downtime: float
    max_downtime: int
    refused: int
    windows: int
    host_busy: float     # mean busy fraction of the host VF unit over the run
    offload_busy: float
    link_utilisation: float  # mean of the busier link direction per window
    placements: list[tuple[int, int, int]]  # (cycle, VFs on host, VFs on offload) per window
    moves: list[MigrationRecord]
    held_back: Counter
    by_class: dict[str, dict[str, float]]
    wall_seconds: float
    completions: list[tuple[int, int, int, int]] | None = None  # (vf, cycle, addr, finish)

    def summary(self) -> dict:
        """The policy.json entry."""
        return {"mean_latency": round(self.mean_latency, 2),
                "p99_latency": round(self.p99_latency, 2), "throughput": round(self.throughput, 4),
                "migrations": self.migrations, "thrash": self.thrash}

    def to_dict(self, timeline: bool = True) -> dict:
        d = self.summary()
        d.update({"policy": self.policy, "n_vfs": self.n_vfs, "requests": self.requests,
                  "max_latency": self.max_latency, "makespan": self.makespan,
                  "mean_downtime": round(self.mean_downtime, 1),
                  "max_downtime": self.max_downtime, "refused": self.refused,
                  "windows": self.windows, "host_busy": round(self.host_busy, 3),
                  "offload_busy": round(self.offload_busy, 3),
                  "link_utilisation": round(self.link_utilisation, 3),
                  "held_back": dict(self.held_back),
                  "by_class": self.by_class, "wall_seconds": round(self.wall_seconds, 2)})
        if timeline:
            d["placements"] = [{"cycle": c, "host": h, "offload": o}
                               for c, h, o in self.placements]
            d["moves"] = [m.to_dict() for m in self.moves]
        return d


class _Window:
    """Counters of one profiler window."""
    __slots__ = ("req", "words", "lsum", "lmax", "hist", "occ", "busy", "link")

    def __init__(self, n: int, bins: int):
        self.req = [0] * n
        self.words = [0] * n
        self.lsum = [0] * n
        self.lmax = [0] * n
        self.hist = [0] * (n * bins)
        self.occ = [0] * n
        self.busy = [0, 0]
        self.link = [0.0, 0.0]


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0].split(";", 1)[0].strip()


def run(config: FastSimConfig, source: Source, policy: Policy, *,
        record_completions: bool = False, max_windows: int | None = None) -> SimResult:
    """Simulate ``source``'s requests under ``policy``; see the module docstring."""
    if source.n_vfs != config.n_vfs:
        raise ValueError(f"the workload has {source.n_vfs} VFs, the configuration "
                         f"{config.n_vfs}")
    wall0 = time.perf_counter()
    cfg = config
    n = cfg.n_vfs
    W = cfg.window
    B = cfg.hist_bins
    lay = cfg.layout
    bw = cfg.link_words_per_cycle
    cpw = cfg.cycles_per_word
    hdr = cfg.header_words
    link_lat = cfg.link_latency
    lat_host, lat_off = cfg.host_latency, cfg.offload_latency
    share = cfg.migration_link_share
    block_shift = lay.block_words.bit_length() - 1
    profiler = cfg.profiler()
    heap: list = []
    push, pop = heapq.heappush, heapq.heappop
    seq = 0

    # -- per-VF state
    location = [0] * n  # Device value; every VF starts on the host
    held: list[list | None] = [None] * n  # requests waiting while the VF is held
    last_fin = [0] * n
    dirty: list[set | None] = [None] * n
    streams: list[Iterator] = [source.stream(vf) for vf in range(n)]
    pending: list = [None] * n
    class_names = sorted({source.class_of(vf) for vf in range(n)})
    class_of = [class_names.index(source.class_of(vf)) for vf in range(n)]
    lats = [array("q") for _ in class_names]
    completions: list | None = [] if record_completions else None
    issued = 0
    totals = [0, 0]  # payload words completed, latest completion cycle
    for vf in range(n):
        req = next(streams[vf], None)
        if req is not None:
            pending[vf] = req
            push(heap, (req[0], seq, _ARRIVAL, vf))
            seq += 1

    # -- devices, link
    dev_free = [0, 0]
    link_free = [0, 0]  # direction 0: toward the offload device, 1: toward the host
    mig_active = [False, False]  # a migration copying in that direction
    windows: dict[int, _Window] = {}
    open_window = [0]  # index of the window the counters are collecting now

    def win(k: int) -> _Window:
        w = windows.get(k)
        if w is None:
            w = windows[k] = _Window(n, B)
        return w

    def add_busy(device: int, start: int, end: int) -> None:
        k = start // W
        while start < end:
            stop = min(end, (k + 1) * W)
            win(k).busy[device] += stop - start
            start, k = stop, k + 1

    def add_link(direction: int, start: float, end: float, words: float) -> None:
        if end <= start:
            win(int(start) // W).link[direction] += words
            return
        per_cycle = words / (end - start)
        k = int(start) // W
        while start < end:
            stop = min(end, (k + 1) * W)
            win(k).link[direction] += per_cycle * (stop - start)
            start, k = stop, k + 1

    def dispatch(vf: int, t0: int, t: int, op: int, addr: int, words: int) -> None:
        """Send a request arriving (or released) at ``t`` to its VF's device; ``t0`` is when
        the VM issued it. Computes its completion at once (every stage is FIFO and requests
        are dispatched in time order)."""
        if location[vf] == 0:
            start = t if t > dev_free[0] else dev_free[0]
            fin = start + lat_host + cpw * (words - 1)
            dev_free[0] = fin
            if start // W == (fin - 1) // W:
                win(start // W).busy[0] += fin - start
            else:
                add_busy(0, start, fin)
        else:
            down = hdr + (words if op == _WRITE or op == _ADD else 0)
            up = hdr + (words if op == _READ or op == _ADD else 0)
            cap = bw * (1.0 - share) if mig_active[0] else bw
            s = link_free[0] if link_free[0] > t else t
            e = s + math.ceil(down / cap)
            link_free[0] = e
            win(s // W).link[0] += down
            arrive = e + link_lat
            start = arrive if arrive > dev_free[1] else dev_free[1]
            done = start + lat_off + cpw * (words - 1)
            dev_free[1] = done
            if start // W == (done - 1) // W:
                win(start // W).busy[1] += done - start
            else:
                add_busy(1, start, done)
            cap = bw * (1.0 - share) if mig_active[1] else bw
            s = link_free[1] if link_free[1] > done else done
            e = s + math.ceil(up / cap)
            link_free[1] = e
            win(s // W).link[1] += up
            fin = e + link_lat
        d = dirty[vf]
        if d is not None and (op == _WRITE or op == _ADD):
            for b in range(addr >> block_shift, ((addr + words - 1) >> block_shift) + 1):
                d.add(b)
        if fin > last_fin[vf]:
            last_fin[vf] = fin
            if fin > totals[1]:
                totals[1] = fin
        totals[0] += words
        lat = fin - t0
        k = fin // W
        w = windows.get(k)
        if w is None:
            w = windows[k] = _Window(n, B)
        w.req[vf] += 1
        w.words[vf] += words
        w.lsum[vf] += lat
        if lat > w.lmax[vf]:
            w.lmax[vf] = lat
        b = lat.bit_length()
        w.hist[vf * B + (b if b < B else B - 1)] += 1
        k0 = t0 // W
        if k0 == k:
            w.occ[vf] += lat
        else:  # the request was outstanding across window boundaries
            a = t0
            if k0 < open_window[0]:
                # Held across a window that is already closed (a release at commit): its
                # wait there is counted in the window open now.
                k0 = open_window[0]
                a = k0 * W
                win(k0).occ[vf] += a - t0
            while k0 <= k:
                stop = min(fin, (k0 + 1) * W)
                win(k0).occ[vf] += stop - a
                a, k0 = stop, k0 + 1
        lats[class_of[vf]].append(lat)
        if completions is not None:
            completions.append((vf, t0, addr, fin))

    # -- migrations
    slots = (cfg.host_slots, cfg.offload_slots)
    slots_used = [n, 0]
    migrating: dict[int, Device] = {}  # vf -> target, issued and not committed
    engine_queue = (deque(), deque())  # per direction: migrations waiting for the engine
    mig: dict[int, dict] = {}
    last_commit: dict[int, tuple[int, int]] = {}  # vf -> (cycle, device it left)
    records: list[MigrationRecord] = []
    link_util_prev = [0.0, 0.0]
    copy_words_full = lay.image_words + (-(-lay.image_words // cfg.chunk_words)
                                         * cfg.chunk_overhead_words)
    block_cost = lay.block_words + cfg.chunk_overhead_words

    def copy_cycles(direction: int, words: int) -> int:
        rate = bw * max(share, 1.0 - min(link_util_prev[direction], 1.0))
        return max(1, math.ceil(words / rate))

    def start_migration(vf: int, t: int) -> None:
        nonlocal seq
        m = mig[vf]
        direction = 0 if m["target"] == Device.OFFLOAD else 1
        mig_active[direction] = True
        m["started"] = t
        dirty[vf] = set()
        t += cfg.begin_cycles  # MIG_BEGIN / MIG_ACCEPT round trip
        cycles = copy_cycles(direction, copy_words_full)
        add_link(direction, t, t + cycles, copy_words_full)
        m["words"] = lay.image_words
        push(heap, (t + cycles, seq, _ROUND_END, vf))
        seq += 1

    def round_end(vf: int, t: int) -> None:
        nonlocal seq
        m = mig[vf]
        direction = 0 if m["target"] == Device.OFFLOAD else 1
        blocks = len(dirty[vf])
        if blocks > cfg.precopy_threshold_blocks and m["rounds"] < cfg.max_precopy_rounds:
            m["rounds"] += 1
            dirty[vf] = set()
            words = blocks * block_cost + cfg.round_overhead_words
            cycles = copy_cycles(direction, words)
            add_link(direction, t, t + cycles, words)
            m["words"] += blocks * lay.block_words
            push(heap, (t + cycles, seq, _ROUND_END, vf))
            seq += 1
            return
        # Stop-copy: hold, drain, residual + CSR/MSI-X/PBA, handshake.
        held[vf] = []
        m["held"] = t
        residual = len(dirty[vf])
        dirty[vf] = None
        words = (residual * block_cost + lay.meta_words + cfg.chunk_overhead_words
                 + cfg.round_overhead_words)
        drained = max(t, last_fin[vf])
        cycles = copy_cycles(direction, words)
        add_link(direction, drained, drained + cycles, words)
        m["words"] += residual * lay.block_words + lay.meta_words
        push(heap, (drained + cycles + cfg.handshake_cycles, seq, _COMMIT, vf))
        seq += 1

    def commit(vf: int, t: int) -> None:
        m = mig.pop(vf)
        source, target = m["source"], m["target"]
        direction = 0 if target == Device.OFFLOAD else 1
        location[vf] = int(target)
        slots_used[source] -= 1
        del migrating[vf]
        downtime = t - m["held"]
        prev = last_commit.get(vf)
        thrash = prev is not None and prev[1] == int(target) and t - prev[0] < cfg.thrash_window
        last_commit[vf] = (t, int(source))
        records.append(MigrationRecord(vf, source, target, m["issued"], m["started"], m["held"],
                                       t, downtime, m["rounds"], m["words"], thrash,
                                       m["reason"]))
        policy.observe(MigrationOutcome(vf, source, target, m["issued"], t, downtime,
                                        m["words"]))
        mig_active[direction] = False
        waiting, held[vf] = held[vf], None
        for r in waiting:
            dispatch(vf, r[0], t, int(r[2]), r[3], r[4])
        if engine_queue[direction]:
            start_migration(engine_queue[direction].popleft(), t)

    refused = 0
    held_back: Counter = Counter()
    placements: list[tuple[int, int, int]] = []
    load = [0.0, 0.0, 0.0]  # sums over windows: host busy, offload busy, link utilisation

    def apply(decisions: list[Decision], t: int) -> None:
        nonlocal refused
        for d in decisions:
            if not d.migrate:
                held_back[_reason_kind(d.reason)] += 1
                continue
            vf, target = d.vf, Device(d.target)
            if (not 0 <= vf < n or vf in migrating or location[vf] == target
                    or location[vf] != d.source or slots_used[target] >= slots[target]):
                refused += 1  # the hardware would refuse it (MIG_REJECT / invalid request)
                continue
            slots_used[target] += 1
            migrating[vf] = target
            mig[vf] = {"source": Device(location[vf]), "target": target, "issued": t,
                       "started": None, "held": None, "rounds": 0, "words": 0,
                       "reason": d.reason}
            direction = 0 if target == Device.OFFLOAD else 1
            if mig_active[direction] or engine_queue[direction]:
                engine_queue[direction].append(vf)
            else:
                start_migration(vf, t)

    def close_window(k: int, t: int) -> None:
        w = windows.pop(k, None) or _Window(n, B)
        open_window[0] = k + 1
        snaps = []
        for vf in range(n):
            hist = tuple(w.hist[vf * B:(vf + 1) * B])
            snaps.append(CounterSnapshot(vf, Device(location[vf]), w.req[vf], 4 * w.words[vf],
                                         w.lsum[vf], w.lmax[vf], hist, w.occ[vf]))
        dev = DeviceSnapshot(W, (w.busy[0], w.busy[1]),
                             (int(round(w.link[0])), int(round(w.link[1]))), bw,
                             (slots_used[0], slots_used[1]), slots)
        report = profiler.analyse(snaps, dev, end=t)
        c = report.contention
        load[0] += c.host_busy
        load[1] += c.offload_busy
        load[2] += c.link_utilisation
        link_util_prev[0] = report.contention.link_to_offload
        link_util_prev[1] = report.contention.link_to_host
        view = SystemView(t, tuple(Device(d) for d in location), dict(migrating), slots,
                          (slots_used[0], slots_used[1]))
        apply(policy.decide(report, view), t)
        on_off = sum(location)
        placements.append((t, n - on_off, on_off))

    push(heap, (W, seq, _WINDOW, 1))
    seq += 1
    n_windows = 0
    while heap:
        t, _, kind, arg = pop(heap)
        if kind == _ARRIVAL:
            vf = arg
            req = pending[vf]
            nxt = next(streams[vf], None)
            if nxt is not None:
                if nxt[0] < t:
                    raise ValueError(f"the workload's stream of VF {vf} goes back in time "
                                     f"(cycle {nxt[0]} after {t})")
                pending[vf] = nxt
                push(heap, (nxt[0], seq, _ARRIVAL, vf))
                seq += 1
            issued += 1
            h = held[vf]
            if h is not None:
                h.append(req)
            else:
                dispatch(vf, t, t, int(req[2]), req[3], req[4])
        elif kind == _WINDOW:
            close_window(arg - 1, t)
            n_windows += 1
            if max_windows is not None and n_windows >= max_windows:
                break
            # Keep closing windows until every response has been counted in one.
            if heap or migrating or totals[1] >= t:
                push(heap, (t + W, seq, _WINDOW, arg + 1))
                seq += 1
        elif kind == _ROUND_END:
            round_end(arg, t)
        else:
            commit(arg, t)

    all_lats = array("q")
    by_class: dict[str, dict[str, float]] = {}
    for name, values in zip(class_names, lats, strict=True):
        ordered = sorted(values)
        by_class[name] = {"vfs": class_of.count(class_names.index(name)),
                          "requests": len(ordered),
                          "mean_latency": round(sum(ordered) / len(ordered), 2) if ordered else 0,
                          "p99_latency": _percentile(ordered, 0.99)}
        all_lats.extend(values)
    ordered = sorted(all_lats)
    total = len(ordered)
    makespan = max(totals[1], 1)
    downtimes = [r.downtime for r in records]
    return SimResult(
        policy=policy.name, n_vfs=n, requests=total, issued=issued,
        mean_latency=sum(ordered) / total if total else 0.0,
        p99_latency=_percentile(ordered, 0.99), max_latency=ordered[-1] if total else 0,
        throughput=4 * totals[0] / makespan,
        makespan=makespan, migrations=len(records), thrash=sum(r.thrash for r in records),
        mean_downtime=sum(downtimes) / len(downtimes) if downtimes else 0.0,
        max_downtime=max(downtimes, default=0), refused=refused, windows=n_windows,
        host_busy=load[0] / max(n_windows, 1), offload_busy=load[1] / max(n_windows, 1),
        link_utilisation=load[2] / max(n_windows, 1),
        placements=placements, moves=records, held_back=held_back, by_class=by_class,
        wall_seconds=time.perf_counter() - wall0, completions=completions)
