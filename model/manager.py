"""The VF Manager (docs/design.md): placement policies fed by the workload profiler.

Every profiler window the caller (the fast simulator, or the VMM of the RTL closed loop) hands
a policy the analysed window (``model.profiler.WindowReport``) and a ``SystemView`` (where each
VF is, which VFs are migrating, slots in use); the policy answers with ``Decision``s. A
decision with ``migrate=True`` asks to move ``vf`` from ``source`` to ``target``; the others
record why a VF the policy looked at stays (cooldown, no slot, budget, not worth it). Every
decision carries a ``reason`` a person can read. After a migration commits the caller tells
the policy with ``observe(MigrationOutcome)``.

Policies:

- ``StaticPolicy`` (``static_host``): never migrates; every VF stays where it started.
- ``SeedPolicy`` (``seed``): the seed's ``decide_migration`` pseudocode, as written, the
  baseline (its quirks are kept on purpose and listed in its docstring).
- ``VFManager`` (``vfmanager``): the real policy: a queueing model of both devices and the
  link predicts the latency saved by each move; moves pass thresholds with hysteresis, a
  cost/benefit test, a per-VF cooldown, the offload slot capacity and a link budget.

``make_policy(name, model, **params)`` builds one by name.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from .common import check_fraction, check_int, check_number
from .config import Device, SystemConfig
from .profiler import WindowReport

POLICIES = ("static_host", "seed", "vfmanager")


def _other(device: Device) -> Device:
    return Device.OFFLOAD if device == Device.HOST else Device.HOST


def _arrow(source: Device, target: Device) -> str:
    return f"{source.label}->{target.label}"


# ---------------------------------------------------------------- what a policy sees
@dataclass(frozen=True)
class SystemView:
    """Placement state at the end of a window.

    ``location[vf]`` is where the VF runs now; ``migrating`` maps each VF with a migration
    issued and not yet committed to its target (its target slot is already reserved);
    ``slots_used[d]`` counts VFs placed on device ``d`` plus reservations for migrations
    toward it."""
    now: int
    location: tuple[Device, ...]
    migrating: Mapping[int, Device]
    slots: tuple[int, int]
    slots_used: tuple[int, int]

    def free(self, device: Device) -> int:
        return self.slots[device] - self.slots_used[device]


@dataclass(frozen=True)
class Decision:
    """One verdict of a policy about one VF. ``gain`` and ``cost`` are the policy's
    prediction in cycles of request latency (0 for the seed policy, which predicts none)."""
    vf: int
    source: Device
    target: Device
    migrate: bool
    reason: str
    gain: float = 0.0
    cost: float = 0.0

    def __str__(self) -> str:
        verb = "migrate" if self.migrate else "stay"
        return f"vf {self.vf} {verb} {_arrow(self.source, self.target)}: {self.reason}"


@dataclass(frozen=True)
class MigrationOutcome:
    """What the caller measured for one committed migration (cycles)."""
    vf: int
    source: Device
    target: Device
    issued: int
    committed: int
    downtime: int
    words_sent: int


# ---------------------------------------------------------------- the hardware, as a model
@dataclass(frozen=True)
class SystemModel:
    """What the VF Manager assumes about the hardware when it predicts a move.

    A request of ``w`` words occupies a device's VF unit ``latency + cycles_per_word*(w-1)``
    cycles, one request at a time. A request to an offload VF crosses the link both ways:
    ``header_words`` each way plus its payload one way, at ``link_words_per_cycle``, plus
    ``link_latency`` per crossing. A migration sends the image in chunks of ``chunk_words``
    (``chunk_overhead_words`` per STATE_DATA), with at least ``migration_link_share`` of the
    link; ``downtime_cycles`` is the first estimate of the downtime, replaced by measured
    downtimes as migrations commit (the RTL measures ~75-110 cycles with pre-copy for the
    default 281-word image)."""
    host_latency: int = 12
    offload_latency: int = 3
    cycles_per_word: float = 1.0
    link_words_per_cycle: float = 1.0
    link_latency: int = 4
    header_words: int = 2
    image_words: int = 281
    chunk_words: int = 64
    chunk_overhead_words: int = 3
    migration_link_share: float = 0.5
    downtime_cycles: float = 100.0

    def __post_init__(self):
        check_int("SystemModel", "host_latency", self.host_latency, 1)
        check_int("SystemModel", "offload_latency", self.offload_latency, 1)
        check_number("SystemModel", "cycles_per_word", self.cycles_per_word, 0)
        check_number("SystemModel", "link_words_per_cycle", self.link_words_per_cycle, 0,
                      low_open=True)
        check_int("SystemModel", "link_latency", self.link_latency, 0)
        check_int("SystemModel", "header_words", self.header_words, 0)
        check_int("SystemModel", "image_words", self.image_words, 1)
        check_int("SystemModel", "chunk_words", self.chunk_words, 1)
        check_int("SystemModel", "chunk_overhead_words", self.chunk_overhead_words, 0)
        check_fraction("SystemModel", "migration_link_share", self.migration_link_share,
                        low_open=True)
        check_number("SystemModel", "downtime_cycles", self.downtime_cycles, 0)

    @classmethod
    def from_config(cls, config: SystemConfig, **overrides) -> SystemModel:
        return cls(host_latency=config.host_latency, offload_latency=config.offload_latency,
                   image_words=config.layout.image_words, chunk_words=config.chunk_words,
                   **overrides)

    def service(self, device: Device, words: float) -> float:
        lat = self.host_latency if device == Device.HOST else self.offload_latency
        return lat + self.cycles_per_word * max(words - 1.0, 0.0)

    def link_occupancy(self, words: float) -> float:
        """Mean cycles one request of an offload VF holds one link direction (the payload
        goes one way: half of it per direction on average)."""
        return (self.header_words + words / 2) / self.link_words_per_cycle

    def link_delay(self, words: float) -> float:
        """Cycles a request of an offload VF spends crossing the link, without queueing."""
        return 2 * (self.link_latency + self.link_occupancy(words))

    def copy_words(self) -> int:
        """Link words of the full-image pre-copy round."""
        chunks = -(-self.image_words // self.chunk_words)
        return self.image_words + chunks * self.chunk_overhead_words

    def copy_cycles(self, link_utilisation: float = 0.0) -> float:
        """Cycles of the full-image round when I/O already uses ``link_utilisation``."""
        share = max(self.migration_link_share, 1.0 - min(link_utilisation, 1.0))
        return self.copy_words() / (self.link_words_per_cycle * share)


# ---------------------------------------------------------------- policies
class Policy:
    """Base class: ``decide`` each window, ``observe`` each committed migration."""
    name = "policy"

    def decide(self, report: WindowReport, view: SystemView) -> list[Decision]:
        raise NotImplementedError

    def observe(self, outcome: MigrationOutcome) -> None:
        """A migration this policy asked for has committed."""


class StaticPolicy(Policy):
    """``static_host``: VFs stay where they were placed at start (all on the host)."""
    name = "static_host"

    def decide(self, report: WindowReport, view: SystemView) -> list[Decision]:
        return []


@dataclass
class SeedPolicy(Policy):
    """The seed's ``decide_migration``, called for each active VF in VF order::

        if latency > threshold_high and offload.available > min_required: migrate_to_offload
        elif throughput > threshold_high and physical.available > min_required:
            migrate_to_physical
        elif physical.cpu_usage > threshold_high:
            for VF in active_VFs: if VF.can_migrate_to_offload(): migrate_to_offload(VF)
        else: no_migration

    Reading it literally, with these choices where the pseudocode is silent:

    - ``threshold_high`` is one name for three quantities of different units; they are
      ``latency_high`` (mean latency of the window, cycles), ``throughput_high`` (bytes per
      cycle) and ``cpu_high`` (host busy fraction).
    - ``resources.available`` is free slots (reservations of issued migrations counted), and
      the comparison is strict: ``free > min_required``.
    - ``active_VFs`` are the VFs with at least one request in the window.
    - ``can_migrate_to_offload``: on the host, not migrating, and the offload has a free slot.
    - ``migrate_to_X`` of a VF already on X does nothing (there is nowhere to go).
    - A VF with a migration in flight is skipped (the hardware refuses a second one).

    Defaults sit between the classes of ``model.workload.phase_mix``: an unloaded host
    answers a one-word request in 12 cycles (above 100: it is queueing); a throughput-heavy
    VF moves ~0.026 bytes/cycle, a latency-sensitive one ~0.0015.

    Kept quirks (the point of a baseline): raw window values, no smoothing; no hysteresis,
    cost model, cooldown or link budget; rule 1 looks at latency wherever the VF runs, so a
    throughput-heavy VF (large transfers, high latency) is sent to the offload device, and,
    once there and the offload is full, rule 2 sends it back (thrash); rule 3 offloads every
    active host VF in VF order until the slots run out, whatever its profile.
    """
    latency_high: float = 100.0
    throughput_high: float = 0.02
    cpu_high: float = 0.8
    min_required: int = 0
    name = "seed"

    def __post_init__(self):
        check_number("SeedPolicy", "latency_high", self.latency_high, 0)
        check_number("SeedPolicy", "throughput_high", self.throughput_high, 0)
        check_fraction("SeedPolicy", "cpu_high", self.cpu_high)
        check_int("SeedPolicy", "min_required", self.min_required, 0)

    def decide(self, report: WindowReport, view: SystemView) -> list[Decision]:
        location = list(view.location)
        free = [view.free(Device.HOST), view.free(Device.OFFLOAD)]
        moving = set(view.migrating)
        active = [w for w in report.workloads if w.active]
        busy = report.contention.host_busy
        out: list[Decision] = []

        def migrate(vf: int, target: Device, reason: str) -> None:
            source = location[vf]
            if source == target:
                out.append(Decision(vf, source, target, False, f"{reason}; already on "
                                    f"{target.label}, nothing to do"))
                return
            out.append(Decision(vf, source, target, True, reason))
            free[target] -= 1
            free[source] += 0  # the source slot frees only at commit
            location[vf] = target
            moving.add(vf)

        for w in active:
            if w.vf in moving:
                continue
            if w.mean_latency > self.latency_high and free[Device.OFFLOAD] > self.min_required:
                migrate(w.vf, Device.OFFLOAD,
                        f"seed rule 1: mean latency {w.mean_latency:.0f} > latency_high "
                        f"{self.latency_high:g} cycles and {free[Device.OFFLOAD]} free offload "
                        f"slots > min_required {self.min_required}")
            elif w.throughput > self.throughput_high and free[Device.HOST] > self.min_required:
                migrate(w.vf, Device.HOST,
                        f"seed rule 2: throughput {w.throughput:.3f} > throughput_high "
                        f"{self.throughput_high:g} bytes/cycle and {free[Device.HOST]} free host "
                        f"slots > min_required {self.min_required}")
            elif busy > self.cpu_high:
                for other in active:
                    if (location[other.vf] == Device.HOST and other.vf not in moving
                            and free[Device.OFFLOAD] > 0):
                        migrate(other.vf, Device.OFFLOAD,
                                f"seed rule 3 (from vf {w.vf}): host busy {busy:.2f} > cpu_high "
                                f"{self.cpu_high:g}, offloading every active host VF that can "
                                f"move")
        return out


# A move away from a device at least this busy (the profiler's measure over the window) is
# reported as relieving its contention; the gain already counts the queueing it removes.
CONTENTION_BUSY = 0.5


@dataclass
class VFManager(Policy):
    """The VF Manager: placement by predicted latency saved, with guards against thrash.

    **Model.** Each device's VF unit is a single server: a VF ``v`` with request rate
    ``λ`` and ``w`` words per request occupies it ``s = latency + (w-1)`` cycles per request
    (``SystemModel.service``); the mean wait of the device is the Pollaczek-Khinchine value
    ``W = Σλs² / (2(1-ρ))`` with ``ρ = Σλs`` (ρ capped at ``rho_cap``), scaled by a factor
    calibrated each window from the measured latencies (real arrivals are burstier than
    Poisson). Offload VFs also queue on the link (same formula, payload + headers at the
    link rate) and pay its crossing latency. ``J = Σ_VFs λ·(W + s + link)`` is the mean
    number of requests in flight (Little's law); the **gain** of moving ``v`` is the drop
    of ``J`` (latency cycles saved per cycle), counting its own latency and the queueing
    it adds or removes for every other VF. Rates are averaged over windows twice, fast
    (``smoothing`` = weight of the newest window) and slow (``slow_smoothing``); a host VF
    counts with the smaller of the two (it must be busy now *and* for a while), an offload
    VF with the larger (it must have quietened down for a while), so bursts and single
    windows move nothing. Request sizes use the fast average.

    **Thresholds with hysteresis.** A move host→offload needs a saving of at least
    ``enter_saving`` cycles per request of the VF (gain / λ); offload→host needs
    ``exit_saving``. Between the two a VF stays, so a VF near the boundary does not flip.

    **Cost/benefit.** The cost of a migration in latency cycles: the image's link time
    (``SystemModel.copy_cycles``, its words over the bandwidth left by I/O) charged as
    ``copy_weight`` cycles per cycle, the measured downtime (EWMA of observed downtimes; the
    VF's requests wait while it is held: ``λ·D²/2``, plus ``D``), and the extra link queueing
    the copy causes the offload VFs' I/O. A move is made only when ``gain × horizon ≥
    cost_margin × cost``.

    **Limits.** A VF that committed a migration less than ``cooldown`` cycles ago does not
    move; the offload slots (reservations counted) cap what goes there, and when they are
    full the resident VF worth least is sent back first (``swap``, at most one per window)
    when a waiting VF would gain at least ``swap_margin`` times what the resident loses; the
    migration words issued per window stay within ``link_budget`` of the window's link
    capacity per direction minus the I/O already on it, and at most ``max_per_window``
    migrations are issued per window.

    Throughput is not scored separately: the workload's requests are offered whatever the
    placement, so a device or link that cannot keep up shows as a queue (ρ near
    ``rho_cap``), i.e. as latency, which the gain counts.
    """
    model: SystemModel = field(default_factory=SystemModel)
    enter_saving: float = 24.0
    exit_saving: float = 48.0
    cooldown: int = 100_000
    horizon: int | None = None  # cycles the gain is counted over; None: the cooldown
    cost_margin: float = 2.0
    copy_weight: float = 1.0
    link_budget: float = 0.25
    max_per_window: int = 16
    swap_margin: float = 2.0
    smoothing: float = 0.5
    slow_smoothing: float = 0.1
    rho_cap: float = 0.98
    min_rate: float = 0.0
    name = "vfmanager"

    def __post_init__(self):
        if not isinstance(self.model, SystemModel):
            raise ValueError(f"VFManager.model must be a SystemModel, not {self.model!r}")
        check_number("VFManager", "enter_saving", self.enter_saving, 0)
        check_number("VFManager", "exit_saving", self.exit_saving, 0)
        check_int("VFManager", "cooldown", self.cooldown, 0)
        if self.horizon is not None:
            check_int("VFManager", "horizon", self.horizon, 1)
        check_number("VFManager", "cost_margin", self.cost_margin, 0)
        check_number("VFManager", "copy_weight", self.copy_weight, 0)
        check_fraction("VFManager", "link_budget", self.link_budget)
        check_int("VFManager", "max_per_window", self.max_per_window, 0)
        check_number("VFManager", "swap_margin", self.swap_margin, 0)
        check_fraction("VFManager", "smoothing", self.smoothing, low_open=True)
        check_fraction("VFManager", "slow_smoothing", self.slow_smoothing, low_open=True)
        check_number("VFManager", "rho_cap", self.rho_cap, 0, 1, low_open=True, high_open=True)
        check_number("VFManager", "min_rate", self.min_rate, 0)
        self._rate: dict[int, float] = {}
        self._fast: dict[int, float] = {}
        self._slow: dict[int, float] = {}
        self._words: dict[int, float] = {}
        self._last_move: dict[int, int] = {}
        self._downtime = float(self.model.downtime_cycles)
        self._calibration = [1.0, 1.0]

    @classmethod
    def params(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "model")

    @property
    def downtime_estimate(self) -> float:
        return self._downtime

    def observe(self, outcome: MigrationOutcome) -> None:
        self._last_move[outcome.vf] = outcome.committed
        self._downtime += 0.25 * (outcome.downtime - self._downtime)

    # -- deciding
    def decide(self, report: WindowReport, view: SystemView) -> list[Decision]:
        m = self.model
        cont = report.contention
        n = len(view.location)
        # Where each VF will be once its pending migration commits (slot already reserved).
        place = [int(view.migrating.get(vf, view.location[vf])) for vf in range(n)]
        fast, slow, words = self._fast, self._slow, self._words
        a, b = self.smoothing, self.slow_smoothing
        for w in report.workloads:
            r = w.rate
            old = fast.get(w.vf, r)
            fast[w.vf] = old + a * (r - old)
            old = slow.get(w.vf, r)
            slow[w.vf] = old + b * (r - old)
            if w.requests:
                ow = words.get(w.vf, w.words_per_request)
                words[w.vf] = ow + a * (w.words_per_request - ow)
        # The rate a VF is judged by: to go to the offload device its activity must be both
        # current (fast average) and sustained (slow average); to be sent back both must
        # have dropped. A burst or one quiet window moves nothing.
        rate = self._rate = {}
        for vf, f in fast.items():
            sl = slow[vf]
            if place[vf] == Device.HOST:
                rate[vf] = f if f < sl else sl
            else:
                rate[vf] = f if f > sl else sl
        self._calibrate(report, view)
        q = _QueueModel(m, self._calibration, self.rho_cap, place, rate, words)

        horizon = self.horizon if self.horizon is not None else max(self.cooldown, 1)
        link_util = (cont.link_to_offload, cont.link_to_host)
        copy_cycles = (m.copy_cycles(link_util[0]), m.copy_cycles(link_util[1]))
        budget = [max(0.0, (self.link_budget - link_util[i]) * cont.window
                      * m.link_words_per_cycle) for i in (0, 1)]
        copy_words = m.copy_words()
        share = m.migration_link_share

        def cost_of(vf: int, target: int) -> tuple[float, str]:
            lam = rate.get(vf, 0.0)
            d = self._downtime
            tc = copy_cycles[0 if target == Device.OFFLOAD else 1]
            # While the copy runs, offload I/O in that direction keeps (1 - share) of the link.
            slowdown = q.lnk[1] * share / (1.0 - share) if share < 1 else 0.0
            cost = self.copy_weight * tc + lam * d * d / 2 + d + slowdown * tc
            return cost, (f"cost {cost:.0f} (copy {tc:.0f} cyc for {copy_words} words, "
                          f"downtime {d:.0f} cyc)")

        out: list[Decision] = []
        now = view.now
        candidates: list[tuple[float, int]] = []
        for vf in range(n):
            lam = rate.get(vf, 0.0)
            if lam <= self.min_rate or lam <= 0 or vf in view.migrating:
                continue
            g = q.quick_gain(vf)
            threshold = self.enter_saving if place[vf] == Device.HOST else self.exit_saving
            if g > 0 and g >= threshold * lam:
                candidates.append((-g, vf))
        heapq.heapify(candidates)

        issued = 0
        free = [view.free(Device.HOST), view.free(Device.OFFLOAD)]
        full_waiting: list[tuple[int, float]] = []  # host VFs refused for want of a slot
        while candidates:
            _, vf = heapq.heappop(candidates)
            lam = rate[vf]
            src = Device(place[vf])
            dst = _other(src)
            g = q.quick_gain(vf)
            if g <= 0:
                continue
            if candidates and g < -candidates[0][0] - 1e-12:
                heapq.heappush(candidates, (-g, vf))  # lazy greedy: re-rank with fresh gain
                continue
            threshold = self.enter_saving if dst == Device.OFFLOAD else self.exit_saving
            saving = g / lam
            if saving < threshold:
                continue
            g, own_before, own_after, waits = q.gain(vf)
            what = (f"saves {saving:.0f} cyc of latency, all VFs together, per request of "
                    f"this VF (threshold {threshold:g}); its own latency {own_before:.0f} -> "
                    f"{own_after:.0f} cyc, {waits}")
            if cont.busy(src) >= CONTENTION_BUSY:
                what += f"; relieves {src.label} contention (busy {cont.busy(src):.0%})"
            last = self._last_move.get(vf)
            if last is not None and now - last < self.cooldown:
                out.append(Decision(vf, src, dst, False,
                                    f"cooldown: moved at cycle {last}, may move again from "
                                    f"cycle {last + self.cooldown}; {what}", g * horizon))
                continue
            cost, cost_text = cost_of(vf, dst)
            benefit = g * horizon
            if benefit < self.cost_margin * cost:
                out.append(Decision(vf, src, dst, False,
                                    f"not worth it: gain {benefit:.0f} over {horizon} cyc < "
                                    f"{self.cost_margin:g} x {cost_text}; {what}",
                                    benefit, cost))
                continue
            if issued >= self.max_per_window:
                out.append(Decision(vf, src, dst, False, f"max_per_window: "
                                    f"{self.max_per_window} migrations already issued; {what}",
                                    benefit, cost))
                continue
            if free[dst] <= 0:
                if dst == Device.OFFLOAD:
                    full_waiting.append((vf, g))
                out.append(Decision(vf, src, dst, False,
                                    f"no free {dst.label} slot: all {view.slots[dst]} in use "
                                    f"or reserved; {what}", benefit, cost))
                continue
            direction = 0 if dst == Device.OFFLOAD else 1
            if budget[direction] < copy_words:
                out.append(Decision(vf, src, dst, False,
                                    f"link budget: {budget[direction]:.0f} words of "
                                    f"link_budget {self.link_budget:g} x window left toward "
                                    f"{dst.label}, the image needs {copy_words}; {what}",
                                    benefit, cost))
                continue
            budget[direction] -= copy_words
            issued += 1
            free[dst] -= 1
            q.move(vf)
            used = view.slots[Device.OFFLOAD] - free[Device.OFFLOAD]
            out.append(Decision(vf, src, dst, True,
                                f"{what}; gain {benefit:.0f} over {horizon} cyc >= "
                                f"{self.cost_margin:g} x {cost_text}; offload slots "
                                f"{used}/{view.slots[Device.OFFLOAD]} after it", benefit, cost))
        if full_waiting and issued < self.max_per_window:
            out.extend(self._swaps(full_waiting, view, q, cost_of, budget, copy_words,
                                   horizon))
        return out

    def _swaps(self, waiting, view, q, cost_of, budget, copy_words,
               horizon) -> list[Decision]:
        """Offload full: send the resident worth least back to the host when the best waiting
        host VF would gain at least ``swap_margin`` times what that resident loses (so
        near-equal VFs are not exchanged back and forth on noise) and the exchange saves at
        least ``enter_saving`` cycles per request of the waiting VF; the waiting VF moves
        once the slot is free (a later window). One swap per window.  (Comparing with the
        mean value of the offloaded VFs, as before, let one heavy resident block every swap:
        docs/workload.md.)"""
        now = view.now
        values: list[tuple[float, int]] = []  # (latency-cyc/cyc lost if it went back, vf)
        for u in range(len(q.place)):
            if q.place[u] != Device.OFFLOAD or u in view.migrating:
                continue
            value = -q.quick_gain(u) if q.rate.get(u, 0.0) > 0 else 0.0
            if now - self._last_move.get(u, -self.cooldown) >= self.cooldown:
                values.append((value, u))
        vf, g_in = max(waiting, key=lambda x: x[1])

        def no_swap(why: str) -> list[Decision]:
            return [Decision(vf, Device.HOST, Device.OFFLOAD, False,
                             f"no swap, {why}; offload full, vf {vf} waits with a gain of "
                             f"{g_in:.3f} latency-cyc/cyc")]

        if not values:
            return no_swap("every offloaded VF moved within the cooldown")
        if budget[1] < copy_words:
            return no_swap(f"link budget toward the host: {budget[1]:.0f} words left, "
                           f"the image needs {copy_words}")
        value, u = min(values)
        net = g_in - value
        if g_in < self.swap_margin * max(value, 0.0) or net < self.enter_saving * q.rate[vf]:
            return no_swap(f"margin: vf {vf} would gain {g_in:.3f}, needs swap_margin "
                           f"{self.swap_margin:g} x {value:.3f} (what vf {u} would lose), and the "
                           f"exchange {net:.3f} at least enter_saving x rate "
                           f"{self.enter_saving * q.rate[vf]:.3f}")
        cost_u, cost_text = cost_of(u, Device.HOST)
        cost_v, _ = cost_of(vf, Device.OFFLOAD)
        if net * horizon < self.cost_margin * (cost_u + cost_v):
            return no_swap(f"not worth it: {net * horizon:.0f} over {horizon} cyc < "
                           f"{self.cost_margin:g} x ({cost_text} + the second move)")
        budget[1] -= copy_words
        q.move(u)
        return [Decision(u, Device.OFFLOAD, Device.HOST, True,
                         f"swap: offload full; vf {vf} (waiting) would save {g_in:.3f} "
                         f"latency-cyc/cyc there >= swap_margin {self.swap_margin:g} x what this "
                         f"VF loses ({value:.3f}); the exchange gains {net:.3f}; "
                         f"{net * horizon:.0f} over {horizon} "
                         f"cyc >= {self.cost_margin:g} x ({cost_text} + the second move)",
                         net * horizon, cost_u + cost_v)]

    def _calibrate(self, report: WindowReport, view: SystemView) -> None:
        """Scale the model's waits to the measured ones (bursty arrivals wait longer than
        Poisson ones), per device, smoothed; only with enough requests and a wait to see."""
        m = self.model
        for device in (Device.HOST, Device.OFFLOAD):
            n = 0
            measured = 0.0
            lam = rho = m2 = 0.0
            for w in report.workloads:
                if w.requests == 0 or w.device != device or w.vf in view.migrating:
                    continue
                s = m.service(device, w.words_per_request)
                link = m.link_delay(w.words_per_request) if device == Device.OFFLOAD else 0.0
                n += w.requests
                measured += w.requests * max(0.0, w.mean_latency - s - link)
                lam += w.rate
                rho += w.rate * s
                m2 += w.rate * s * s
            if n < 50 or rho <= 0:
                continue
            predicted = m2 / (2.0 * (1.0 - min(rho, self.rho_cap)))
            if predicted < 1.0:
                continue
            factor = min(8.0, max(1.0, (measured / n) / predicted))
            self._calibration[device] += 0.5 * (factor - self._calibration[device])


class _QueueModel:
    """The VF Manager's model of one decision round: per device Σλ, Σλs, Σλs² and for the
    link Σλ, Σλt, Σλt² over the VFs where they will be, the terms λ·W of J per device and
    for the link, and the gain of moving one VF (see ``VFManager``)."""

    def __init__(self, model: SystemModel, calibration: list[float], rho_cap: float,
                 place: list[int], rate: dict[int, float], words: dict[int, float]):
        self.model, self.cal, self.cap = model, calibration, rho_cap
        self.place, self.rate, self.words = place, rate, words
        self.lat = (model.host_latency, model.offload_latency)
        self.agg = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
        self.lnk = [0.0, 0.0, 0.0]
        for vf, lam in rate.items():
            if lam > 0:
                self._add(vf, place[vf], lam)
        self._refresh()

    def _service(self, device: int, words: float) -> float:
        return self.lat[device] + self.model.cycles_per_word * (words - 1 if words > 1 else 0)

    def _add(self, vf: int, device: int, lam: float) -> None:
        """Add (lam > 0) or remove (lam < 0) a VF's load on ``device``."""
        wd = self.words.get(vf, 1.0)
        s = self._service(device, wd)
        g = self.agg[device]
        g[0] += lam
        g[1] += lam * s
        g[2] += lam * s * s
        if device == Device.OFFLOAD:
            t = self.model.link_occupancy(wd)
            self.lnk[0] += lam
            self.lnk[1] += lam * t
            self.lnk[2] += lam * t * t

    def _j(self, device: int, lam: float, rho: float, m2: float) -> float:
        """λ·W of a device (device 2: the link, not calibrated)."""
        if lam <= 1e-15:
            return 0.0
        cal = self.cal[device] if device < 2 else 1.0
        return lam * cal * m2 / (2.0 * (1.0 - (rho if rho < self.cap else self.cap)))

    def _refresh(self) -> None:
        h, o, lk = self.agg[0], self.agg[1], self.lnk
        self.j = [self._j(0, *h), self._j(1, *o), self._j(2, *lk)]

    def wait(self, device: int, lam: float, rho: float, m2: float) -> float:
        return self._j(device, lam, rho, m2) / lam if lam > 1e-15 else 0.0

    def gain(self, vf: int) -> tuple[float, float, float, str]:
        """(latency-cyc/cyc saved by moving ``vf`` to the other device, its latency per
        request where it is, its latency per request after the move, the predicted mean
        waits of both devices before -> after, as text)."""
        m = self.model
        lam = self.rate.get(vf, 0.0)
        wd = self.words.get(vf, 1.0)
        src = self.place[vf]
        dst = 1 - src
        s_src, s_dst = self._service(src, wd), self._service(dst, wd)
        a_s, a_d, lk = self.agg[src], self.agg[dst], self.lnk
        src_after = (a_s[0] - lam, a_s[1] - lam * s_src, a_s[2] - lam * s_src * s_src)
        dst_after = (a_d[0] + lam, a_d[1] + lam * s_dst, a_d[2] + lam * s_dst * s_dst)
        t = m.link_occupancy(wd)
        sign = 1.0 if dst == Device.OFFLOAD else -1.0
        lk_after = (lk[0] + sign * lam, lk[1] + sign * lam * t, lk[2] + sign * lam * t * t)
        j_after = self._j(src, *src_after) + self._j(dst, *dst_after) + self._j(2, *lk_after)
        crossing = m.link_delay(wd)
        fixed_src = s_src + (crossing if src == Device.OFFLOAD else 0.0)
        fixed_dst = s_dst + (crossing if dst == Device.OFFLOAD else 0.0)
        gain = self.j[0] + self.j[1] + self.j[2] - j_after + lam * (fixed_src - fixed_dst)
        link_now = self.wait(2, *lk) if src == Device.OFFLOAD else 0.0
        link_next = self.wait(2, *lk_after) if dst == Device.OFFLOAD else 0.0
        own_before = fixed_src + self.wait(src, *a_s) + link_now
        own_after = fixed_dst + self.wait(dst, *dst_after) + link_next
        waits = {src: (self.wait(src, *a_s), self.wait(src, *src_after)),
                 dst: (self.wait(dst, *a_d), self.wait(dst, *dst_after))}
        text = ", ".join(f"{Device(d).label} wait {waits[d][0]:.0f} -> {waits[d][1]:.0f} cyc"
                         for d in (Device.HOST, Device.OFFLOAD))
        return gain, own_before, own_after, text

    def quick_gain(self, vf: int) -> float:
        """``gain(vf)[0]``, inlined: it is evaluated for every VF every window."""
        lam = self.rate.get(vf, 0.0)
        wd = self.words.get(vf, 1.0)
        src = self.place[vf]
        dst = 1 - src
        m = self.model
        extra = m.cycles_per_word * (wd - 1 if wd > 1 else 0)
        s_src, s_dst = self.lat[src] + extra, self.lat[dst] + extra
        cap = self.cap
        a = self.agg[src]
        lam_a, rho, m2 = a[0] - lam, a[1] - lam * s_src, a[2] - lam * s_src * s_src
        j_after = (lam_a * self.cal[src] * m2 / (2.0 * (1.0 - (rho if rho < cap else cap)))
                   if lam_a > 1e-15 else 0.0)
        a = self.agg[dst]
        lam_a, rho, m2 = a[0] + lam, a[1] + lam * s_dst, a[2] + lam * s_dst * s_dst
        j_after += lam_a * self.cal[dst] * m2 / (2.0 * (1.0 - (rho if rho < cap else cap)))
        t = (m.header_words + wd / 2) / m.link_words_per_cycle
        lk = self.lnk
        sign = lam if dst == Device.OFFLOAD else -lam
        lam_a, rho, m2 = lk[0] + sign, lk[1] + sign * t, lk[2] + sign * t * t
        if lam_a > 1e-15:
            j_after += lam_a * m2 / (2.0 * (1.0 - (rho if rho < cap else cap)))
        crossing = 2 * (m.link_latency + t)
        fixed = s_src - s_dst + (crossing if src == Device.OFFLOAD else -crossing)
        return self.j[0] + self.j[1] + self.j[2] - j_after + lam * fixed

    def move(self, vf: int) -> None:
        lam = self.rate.get(vf, 0.0)
        src = self.place[vf]
        if lam > 0:
            self._add(vf, src, -lam)
            self._add(vf, 1 - src, lam)
        self.place[vf] = 1 - src
        self._refresh()


def make_policy(name: str, model: SystemModel | None = None, **params) -> Policy:
    """A policy by name: ``static_host`` (or ``static``), ``seed``, ``vfmanager``.
    Unknown names and parameters raise ValueError naming them."""
    if name in ("static_host", "static"):
        if params:
            raise ValueError(f"policy static_host takes no parameters, got "
                             f"{', '.join(sorted(params))}")
        return StaticPolicy()
    if name == "seed":
        cls, known = SeedPolicy, ("latency_high", "throughput_high", "cpu_high", "min_required")
    elif name == "vfmanager":
        cls, known = VFManager, VFManager.params()
    else:
        raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"policy {name} has no parameter {', '.join(unknown)} (it has "
                         f"{', '.join(known)})")
    if cls is VFManager and model is not None:
        params["model"] = model
    return cls(**params)
