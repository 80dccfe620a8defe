"""Workloads for the VF Manager (docs/design.md): request streams per VF, and a replayable trace.

A *workload class* says how one VF behaves; ``Workload`` gives every VF a class and turns
the whole thing into per-VF request streams, deterministic from one seed (VF ``v`` draws from
its own ``random.Random(f"{seed}/{v}")``, so adding VFs never changes the others' streams).

Classes (time in cycles, sizes in 32-bit words, addresses are word offsets in the VF's state
image, ``model.state.ImageLayout``):

- ``LatencySensitive``: small requests (1 word), Poisson arrivals, many NOTIFYs (frequent
  interrupts), writes to a small hot set.
- ``ThroughputHeavy``: large transfers (``min_words``..``max_words`` per request) swept over
  the whole memory.
- ``Bursty``: bursts of small requests at a high rate separated by long silences.
- ``Idle``: a rare small read.
- ``PhaseChanging``: a sequence of (cycles, class) phases, cycled until the end of the run.

A request of ``words > 1`` is one transfer of consecutive words starting at ``addr``
(the RTL replays it as ``words`` single-word requests). The trace format (CSV, see
``docs/workload.md``) carries exactly these fields; ``load_trace`` names the file and the line
of the first bad record.
"""

from __future__ import annotations

import csv
import heapq
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .common import check_fraction, check_int, check_number
from .state import ImageLayout, Op

TRACE_COLUMNS = ("cycle", "vf", "op", "addr", "words", "data")
_WRITES = (Op.WRITE, Op.ADD)


class Request(NamedTuple):
    """One VM request: at ``cycle`` the VM of ``vf`` issues ``op`` on ``words`` words from
    ``addr`` (NOTIFY: ``data`` is the MSI-X vector, ``addr`` is 0, ``words`` is 1)."""
    cycle: int
    vf: int
    op: Op
    addr: int
    words: int = 1
    data: int = 0


class TraceError(ValueError):
    """A bad trace file: the message starts with ``path:line:``."""


def _gap(rng: random.Random, mean: float) -> int:
    """Exponential inter-arrival time, at least one cycle."""
    return max(1, int(rng.expovariate(1.0 / mean) + 0.5))


# ---------------------------------------------------------------- workload classes
class WorkloadClass:
    """Behaviour of one VF. ``requests`` yields (cycle, op, addr, words, data) tuples in
    non-decreasing cycle order for cycles in [start, end)."""
    name = "class"

    def requests(self, rng: random.Random, layout: ImageLayout, start: int,
                 end: int) -> Iterator[tuple[int, Op, int, int, int]]:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return self.name

    def mean_rate(self) -> float:
        """Expected requests per cycle over a long run."""
        raise NotImplementedError


def _small_op(rng: random.Random, layout: ImageLayout, hot: Sequence[int], notify: float,
              write: float) -> tuple[Op, int, int]:
    """(op, addr, data) of a one-word request: NOTIFY, a write to the hot set, or a read."""
    r = rng.random()
    if r < notify:
        return Op.NOTIFY, 0, rng.randrange(layout.msix_vectors)
    if r < notify + write:
        return (Op.WRITE if rng.random() < 0.75 else Op.ADD), rng.choice(hot), 1
    return Op.READ, rng.choice(hot), 0


def _hot_set(layout: ImageLayout, blocks: int) -> list[int]:
    """The first ``blocks`` dirty blocks of VF memory (block-aligned): a small working set."""
    base = -(-layout.mem_base // layout.block_words) * layout.block_words
    if base >= layout.image_words:
        base = layout.mem_base
    return list(range(base, min(layout.image_words, base + blocks * layout.block_words)))


@dataclass(frozen=True)
class LatencySensitive(WorkloadClass):
    """Small requests, Poisson arrivals every ``mean_gap`` cycles on average, a share
    ``notify`` of NOTIFYs (interrupts) and ``write`` of writes to ``hot_blocks`` blocks."""
    mean_gap: float = 1500.0
    notify: float = 0.25
    write: float = 0.3
    hot_blocks: int = 1
    name = "latency"

    def __post_init__(self):
        check_number("LatencySensitive", "mean_gap", self.mean_gap, 0, low_open=True)
        check_fraction("LatencySensitive", "notify", self.notify)
        check_fraction("LatencySensitive", "write", self.write)
        if self.notify + self.write > 1:
            raise ValueError(f"LatencySensitive.notify + write must be <= 1, not "
                             f"{self.notify + self.write}")
        check_int("LatencySensitive", "hot_blocks", self.hot_blocks, 1)

    def mean_rate(self) -> float:
        return 1.0 / self.mean_gap

    def requests(self, rng, layout, start, end):
        hot = _hot_set(layout, self.hot_blocks)
        t = start + _gap(rng, self.mean_gap)
        while t < end:
            op, addr, data = _small_op(rng, layout, hot, self.notify, self.write)
            yield t, op, addr, 1, data
            t += _gap(rng, self.mean_gap)


@dataclass(frozen=True)
class ThroughputHeavy(WorkloadClass):
    """Large transfers of ``min_words``..``max_words`` words every ``mean_gap`` cycles on
    average, a share ``write`` of them writes, swept sequentially over the VF memory."""
    mean_gap: float = 12000.0
    min_words: int = 64
    max_words: int = 192
    write: float = 0.5
    name = "throughput"

    def __post_init__(self):
        check_number("ThroughputHeavy", "mean_gap", self.mean_gap, 0, low_open=True)
        check_int("ThroughputHeavy", "min_words", self.min_words, 1)
        check_int("ThroughputHeavy", "max_words", self.max_words, 1)
        if self.max_words < self.min_words:
            raise ValueError(f"ThroughputHeavy.max_words ({self.max_words}) must be >= "
                             f"min_words ({self.min_words})")
        check_fraction("ThroughputHeavy", "write", self.write)

    def mean_rate(self) -> float:
        return 1.0 / self.mean_gap

    def requests(self, rng, layout, start, end):
        words_max = min(self.max_words, layout.mem_words)
        words_min = min(self.min_words, words_max)
        cursor = layout.mem_base
        t = start + _gap(rng, self.mean_gap)
        while t < end:
            words = rng.randint(words_min, words_max)
            if cursor + words > layout.image_words:
                cursor = layout.mem_base
            op = Op.WRITE if rng.random() < self.write else Op.READ
            yield t, op, cursor, words, 0
            cursor += words
            t += _gap(rng, self.mean_gap)


@dataclass(frozen=True)
class Bursty(WorkloadClass):
    """Bursts of about ``burst_requests`` small requests, ``burst_gap`` cycles apart on
    average, separated by silences of ``silence`` cycles on average."""
    burst_gap: float = 60.0
    burst_requests: float = 40.0
    silence: float = 60000.0
    notify: float = 0.1
    write: float = 0.4
    name = "bursty"

    def __post_init__(self):
        for name in ("burst_gap", "burst_requests", "silence"):
            check_number("Bursty", name, getattr(self, name), 0, low_open=True)
        check_fraction("Bursty", "notify", self.notify)
        check_fraction("Bursty", "write", self.write)
        if self.notify + self.write > 1:
            raise ValueError(f"Bursty.notify + write must be <= 1, not "
                             f"{self.notify + self.write}")

    def mean_rate(self) -> float:
        return self.burst_requests / (self.burst_requests * self.burst_gap + self.silence)

    def requests(self, rng, layout, start, end):
        hot = _hot_set(layout, 2)
        t = start + _gap(rng, self.silence)
        while t < end:
            n = max(1, int(rng.expovariate(1.0 / self.burst_requests) + 0.5))
            for _ in range(n):
                if t >= end:
                    return
                op, addr, data = _small_op(rng, layout, hot, self.notify, self.write)
                yield t, op, addr, 1, data
                t += _gap(rng, self.burst_gap)
            t += _gap(rng, self.silence)


@dataclass(frozen=True)
class Idle(WorkloadClass):
    """A one-word read every ``mean_gap`` cycles on average (a VF that is there but unused)."""
    mean_gap: float = 100000.0
    name = "idle"

    def __post_init__(self):
        check_number("Idle", "mean_gap", self.mean_gap, 0, low_open=True)

    def mean_rate(self) -> float:
        return 1.0 / self.mean_gap

    def requests(self, rng, layout, start, end):
        t = start + _gap(rng, self.mean_gap)
        while t < end:
            yield t, Op.READ, layout.mem_base, 1, 0
            t += _gap(rng, self.mean_gap)


@dataclass(frozen=True)
class PhaseChanging(WorkloadClass):
    """``phases`` = ((cycles, class), ...): the VF behaves as each class in turn for its
    number of cycles, from ``offset`` cycles into the sequence, cycling until the end."""
    phases: tuple[tuple[int, WorkloadClass], ...] = ()
    offset: int = 0
    name = "phase"

    def __post_init__(self):
        if not self.phases:
            raise ValueError("PhaseChanging.phases must hold at least one (cycles, class) pair")
        for i, item in enumerate(self.phases):
            if (not isinstance(item, tuple) or len(item) != 2
                    or not isinstance(item[1], WorkloadClass)
                    or isinstance(item[1], PhaseChanging)):
                raise ValueError(f"PhaseChanging.phases[{i}] must be (cycles, class) with a "
                                 f"non-phase class, not {item!r}")
            check_int("PhaseChanging", f"phases[{i}] cycles", item[0], 1)
        check_int("PhaseChanging", "offset", self.offset, 0)

    @property
    def label(self) -> str:
        return "phase(" + ">".join(c.label for _, c in self.phases) + ")"

    def mean_rate(self) -> float:
        period = sum(n for n, _ in self.phases)
        return sum(n * cls.mean_rate() for n, cls in self.phases) / period

    def class_at(self, cycle: int) -> WorkloadClass:
        period = sum(n for n, _ in self.phases)
        t = (cycle + self.offset) % period
        for n, cls in self.phases:
            if t < n:
                return cls
            t -= n
        raise AssertionError("unreachable")

    def requests(self, rng, layout, start, end):
        period = sum(n for n, _ in self.phases)
        t = start
        pos = self.offset % period
        i = 0
        while pos >= self.phases[i][0]:
            pos -= self.phases[i][0]
            i += 1
        while t < end:
            n, cls = self.phases[i]
            stop = min(end, t + n - pos)
            # Each phase draws from its own child generator so one phase's length never
            # shifts the random numbers of the next.
            yield from cls.requests(random.Random(rng.getrandbits(64)), layout, t, stop)
            t, pos, i = stop, 0, (i + 1) % len(self.phases)


# ---------------------------------------------------------------- workloads
class Source:
    """What the fast simulator needs from a workload: ``n_vfs`` and a time-ordered
    ``stream(vf)`` of ``Request`` per VF."""
    n_vfs: int

    def stream(self, vf: int) -> Iterator[Request]:
        raise NotImplementedError

    def requests(self) -> Iterator[Request]:
        """Every VF's requests merged in (cycle, vf) order."""
        return heapq.merge(*(self.stream(vf) for vf in range(self.n_vfs)),
                           key=lambda r: (r.cycle, r.vf))

    def class_of(self, vf: int) -> str:
        return "trace"


@dataclass(frozen=True)
class Workload(Source):
    """One class per VF, requests in [0, ``duration``) cycles, deterministic from ``seed``."""
    classes: tuple[WorkloadClass, ...]
    duration: int
    seed: int = 1
    layout: ImageLayout = field(default_factory=ImageLayout)

    def __post_init__(self):
        if not self.classes or not all(isinstance(c, WorkloadClass) for c in self.classes):
            raise ValueError("Workload.classes must be a non-empty sequence of WorkloadClass")
        object.__setattr__(self, "classes", tuple(self.classes))
        check_int("Workload", "duration", self.duration, 1)
        check_int("Workload", "seed", self.seed, -(1 << 63))

    @property
    def n_vfs(self) -> int:
        return len(self.classes)

    def class_of(self, vf: int) -> str:
        return self.classes[vf].label

    def expected_requests(self) -> float:
        """Requests the workload issues on average (from the classes' mean rates)."""
        return self.duration * sum(c.mean_rate() for c in self.classes)

    def stream(self, vf: int) -> Iterator[Request]:
        rng = random.Random(f"{self.seed}/{vf}")
        for cycle, op, addr, words, data in self.classes[vf].requests(
                rng, self.layout, 0, self.duration):
            yield Request(cycle, vf, op, addr, words, data)


@dataclass(frozen=True)
class TraceWorkload(Source):
    """A recorded list of requests (from ``load_trace``), replayed as is."""
    records: tuple[Request, ...]
    n_vfs: int
    _by_vf: list = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "records", tuple(self.records))
        check_int("TraceWorkload", "n_vfs", self.n_vfs, 1)
        by_vf: list[list[Request]] = [[] for _ in range(self.n_vfs)]
        for r in self.records:
            if not 0 <= r.vf < self.n_vfs:
                raise ValueError(f"TraceWorkload: request of VF {r.vf} but n_vfs is "
                                 f"{self.n_vfs}")
            by_vf[r.vf].append(r)
        object.__setattr__(self, "_by_vf", by_vf)

    def stream(self, vf: int) -> Iterator[Request]:
        return iter(self._by_vf[vf])

    def requests(self) -> Iterator[Request]:
        return iter(self.records)


# ---------------------------------------------------------------- presets
def phase_mix(n_vfs: int, duration: int, seed: int = 1, load: float = 1.0,
              phase_cycles: int = 400_000, layout: ImageLayout | None = None) -> Workload:
    """The phase-changing mixed workload of the policy benchmark.

    Per 32 VFs (exact proportions, shuffled by ``seed``): 6 latency-sensitive (mean gap
    1200..6000 cycles, log-uniform), 3 throughput-heavy (64..192 words every 16000..24000
    cycles), 6 bursty (bursts of ~40 requests every 70000..130000 cycles), 10 idle and 7
    phase-changing VFs that cycle through latency-sensitive → throughput-heavy → idle
    phases of ``phase_cycles`` each, from a random starting phase. ``load`` scales every
    rate (2.0 = twice the requests); the rates are also scaled by 256 / ``n_vfs`` so the
    host sees the same load at any VF count: with the default latencies (host 12 cycles
    per request + 1 per further word) the host VF unit is ~88 % busy when every VF stays
    there.
    """
    check_int("phase_mix", "n_vfs", n_vfs, 1)
    check_number("phase_mix", "load", load, 0, low_open=True)
    check_int("phase_mix", "phase_cycles", phase_cycles, 1)
    rng = random.Random(f"phase_mix/{seed}")
    scale = load * 256 / max(n_vfs, 1)

    def latency() -> LatencySensitive:
        return LatencySensitive(mean_gap=1200 * 5 ** rng.random() / scale)

    def throughput() -> ThroughputHeavy:
        return ThroughputHeavy(mean_gap=rng.uniform(16_000, 24_000) / scale)

    mix = (("latency", 6), ("throughput", 3), ("bursty", 6), ("idle", 10), ("phase", 7))
    # Exact proportions (largest remainders), shuffled: every seed has the same mix.
    quotas = [(n_vfs * k / 32, name) for name, k in mix]
    counts = {name: int(q) for q, name in quotas}
    for _, name in sorted(quotas, key=lambda x: int(x[0]) - x[0])[:n_vfs - sum(counts.values())]:
        counts[name] += 1
    kinds = [name for name, _ in mix for _ in range(counts[name])]
    rng.shuffle(kinds)
    classes: list[WorkloadClass] = []
    for kind in kinds:
        if kind == "latency":
            classes.append(latency())
        elif kind == "throughput":
            classes.append(throughput())
        elif kind == "bursty":
            classes.append(Bursty(silence=rng.uniform(70_000, 130_000) / scale))
        elif kind == "idle":
            classes.append(Idle(mean_gap=100_000 / scale))
        else:
            phases = ((phase_cycles, latency()), (phase_cycles, throughput()),
                      (phase_cycles, Idle(mean_gap=100_000 / scale)))
            classes.append(PhaseChanging(phases, offset=rng.randrange(3) * phase_cycles))
    return Workload(tuple(classes), duration, seed, layout or ImageLayout())


SHOWCASE_ROLES = ("writer", "latency", "idle-then-latency", "latency-then-idle", "throughput",
                  "idle-then-latency")


def showcase(n_vfs: int, duration: int, seed: int = 1, layout: ImageLayout | None = None,
             load: float = 1.0) -> Workload:
    """The workload of ``make sim``: six VFs with clear roles, so that one run shows each
    placement rule of the VF Manager at the RTL's scale (docs/workload.md).

    VF 0 is latency-sensitive and writes all over its memory (its pre-copy needs dirty
    rounds); VF 1 is latency-sensitive; VF 2 is idle for the first half, then the most
    latency-sensitive of all (it wants an offload slot when they are taken); VF 3 is
    latency-sensitive for the first quarter, then idle (the resident worth least); VF 4 moves
    large transfers (it keeps the host busy); VF 5 is idle for the first 30 %, then
    latency-sensitive; any further VF is idle. ``load`` scales every rate.
    """
    check_int("showcase", "n_vfs", n_vfs, len(SHOWCASE_ROLES))
    check_int("showcase", "duration", duration, 1)
    check_number("showcase", "load", load, 0, low_open=True)

    def latency(gap: float) -> LatencySensitive:
        return LatencySensitive(mean_gap=gap / load)

    idle = Idle(mean_gap=20_000 / load)
    classes = (
        LatencySensitive(mean_gap=40 / load, write=0.95, notify=0.0, hot_blocks=24),
        latency(80), PhaseChanging(((duration // 2, idle), (duration, latency(25)))),
        PhaseChanging(((duration // 4, latency(80)), (duration, idle))),
        ThroughputHeavy(mean_gap=2500 / load, min_words=16, max_words=32),
        PhaseChanging(((duration * 3 // 10, idle), (duration, latency(40)))),
    ) + (idle,) * (n_vfs - len(SHOWCASE_ROLES))
    return Workload(classes, duration, seed, layout or ImageLayout())


# ---------------------------------------------------------------- trace files
def _parse_int(text: str, what: str) -> int:
    text = text.strip()
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not an integer") from None


def _parse_op(text: str) -> Op:
    text = text.strip()
    try:
        return Op[text.upper()]
    except KeyError:
        pass
    try:
        return Op(int(text, 0))
    except ValueError:
        names = "/".join(o.name for o in Op)
        raise ValueError(f"op {text!r} is not one of {names} (or 0..3)") from None


def parse_trace(lines: Iterable[str], name: str = "<trace>", n_vfs: int | None = None,
                layout: ImageLayout | None = None) -> TraceWorkload:
    """Parse trace text (see ``docs/workload.md``); errors name ``name:line``."""
    layout = layout or ImageLayout()
    records: list[Request] = []
    header_seen = False
    last_cycle = 0
    max_vf = -1
    for lineno, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = next(csv.reader([line]))
        if not header_seen and fields and fields[0].strip().lower() == "cycle":
            cols = tuple(f.strip().lower() for f in fields)
            if cols not in (TRACE_COLUMNS[:5], TRACE_COLUMNS):
                raise TraceError(f"{name}:{lineno}: header must be "
                                 f"'{','.join(TRACE_COLUMNS[:5])}[,data]', not {line!r}")
            header_seen = True
            continue
        header_seen = True
        try:
            if len(fields) not in (5, 6):
                raise ValueError(f"expected 5 or 6 fields ({','.join(TRACE_COLUMNS)}), got "
                                 f"{len(fields)}")
            cycle = _parse_int(fields[0], "cycle")
            vf = _parse_int(fields[1], "vf")
            op = _parse_op(fields[2])
            addr = _parse_int(fields[3], "addr")
            words = _parse_int(fields[4], "words")
            data = _parse_int(fields[5], "data") if len(fields) == 6 else 0
            if cycle < 0:
                raise ValueError(f"cycle {cycle} is negative")
            if cycle < last_cycle:
                raise ValueError(f"cycle {cycle} is before the previous record's cycle "
                                 f"{last_cycle} (a trace is in time order)")
            if vf < 0 or (n_vfs is not None and vf >= n_vfs):
                raise ValueError(f"vf {vf} is outside 0..{(n_vfs or 1) - 1}")
            if words < 1:
                raise ValueError(f"words {words} must be >= 1")
            if op == Op.NOTIFY:
                if words != 1:
                    raise ValueError(f"a NOTIFY has words 1, not {words}")
                if not 0 <= data < layout.msix_vectors:
                    raise ValueError(f"NOTIFY vector (data) {data} is outside "
                                     f"0..{layout.msix_vectors - 1}")
            elif addr < 0 or addr + words > layout.image_words:
                raise ValueError(f"addr {addr} + words {words} is outside the "
                                 f"{layout.image_words}-word image")
            if not 0 <= data <= 0xFFFF_FFFF:
                raise ValueError(f"data {data} is not a 32-bit value")
        except ValueError as exc:
            raise TraceError(f"{name}:{lineno}: {exc}") from None
        last_cycle = cycle
        max_vf = max(max_vf, vf)
        records.append(Request(cycle, vf, op, addr, words, data))
    if not records:
        raise TraceError(f"{name}: the trace holds no requests")
    return TraceWorkload(tuple(records), n_vfs if n_vfs is not None else max_vf + 1)


def load_trace(path: str | Path, n_vfs: int | None = None,
               layout: ImageLayout | None = None) -> TraceWorkload:
    """Read a trace file; a bad record raises ``TraceError('path:line: what is wrong')``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace ({exc.strerror})") from None
    return parse_trace(text.splitlines(), str(path), n_vfs, layout)


def write_trace(path: str | Path, requests: Iterable[Request]) -> int:
    """Write requests (in time order) as a trace file; returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w") as f:
        f.write(",".join(TRACE_COLUMNS) + "\n")
        for r in requests:
            f.write(f"{r.cycle},{r.vf},{Op(r.op).name},{r.addr},{r.words},{r.data}\n")
            n += 1
    return n
