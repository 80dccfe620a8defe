"""A fault channel in HDL: one direction of a link wire with seeded faults.

Testbenches put it between the two link ports, and so does the board self-test
(hdl/board/selftest.py), which turns its faults on in every other round. It replaces the
per-cycle Python wire driver (``tb.common.link_fault.FaultyChannel`` moved by a coroutine)
with logic that runs inside the simulator: the testbench sets its fault
rates once (ports, so one build serves every fault configuration) and reads its counters.
The faults are those of ``model.link.FaultyWire`` (``model.link.FaultConfig``): bit errors
at a bit error rate over the flit and its sop bit, bursts of ``burst_bits`` flipped bits,
dropped flits, duplicated flits, delays (the wire holds the flit and everything behind it
for 1..``delay_max`` cycles) and link-down windows. Random decisions come from seeded
xorshift32 generators (linear feedback shift registers over GF(2)), one per kind, so the
fault *positions* differ from Python's ``random.Random`` but the rates match (a test).

Difference from the Python model, on purpose: a flit gets at most one bit error from the
BER (at probability ``1 - (1 - ber)**bits``, the Python model's rate of flipped flits), plus
a burst; two BER errors in one flit (probability ~ ``(bits * ber)**2 / 2``) are not
modelled. The queue behind duplicates and delays holds ``depth`` flits; a flit arriving at
a full queue is lost and counted in ``overflowed``.

Ports (``wiring.Component`` signature):

- ``tx_valid``/``tx_sop``/``tx_flit`` In: what the transmitter drives;
- ``rx_valid``/``rx_sop``/``rx_flit`` Out: what the receiver sees;
- ``arm`` In: faults and the window cycle count start in the first cycle ``arm`` is high
  (sticky; tie it to 1 for "from reset", or to an engine phase output);
- ``thr_<kind>`` In (33 bits): the rate as ``round(rate * 2**32)`` for ``ber`` (the per-flit
  rate of a BER error), ``burst``, ``drop``, ``dup``, ``delay``;
- ``burst_bits``, ``delay_max`` In; ``down_start_<i>``/``down_cycles_<i>`` In: link-down
  windows counted in armed cycles (``down_cycles`` 0: no window);
- ``count_<name>`` Out (32 bits): ``flits``, ``bit_flips``, ``flipped_flits``, ``bursts``,
  ``dropped``, ``duplicated``, ``delays``, ``down_lost``, ``overflowed``, ``forwarded``.

Latency: a flit driven in cycle ``t`` is seen by the receiver in cycle ``t + 1`` unless a
fault drops, delays or duplicates it (the same timing as ``tb.common.link_fault``).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from model.common import check_int
from model.link import FaultConfig

__all__ = ["COUNTERS", "FAULT_KINDS", "FaultChannel", "channel_settings", "split_seed"]

FAULT_KINDS = ("ber", "burst", "drop", "dup", "delay", "down")
RATE_KINDS = ("ber", "burst", "drop", "dup", "delay")
COUNTERS = ("flits", "bit_flips", "flipped_flits", "bursts", "dropped", "duplicated", "delays",
            "down_lost", "overflowed", "forwarded")
_GENERATORS = ("ber", "burst", "drop", "dup", "delay", "aux")
ONE = 1 << 32          # a threshold of rate 1.0


def split_seed(seed: int, count: int) -> list[int]:
    """``count`` non-zero 32-bit xorshift states from one seed (splitmix32 steps)."""
    states, x = [], seed & 0xFFFF_FFFF
    for _ in range(count):
        x = (x + 0x9E37_79B9) & 0xFFFF_FFFF
        z = x
        z = ((z ^ (z >> 16)) * 0x85EB_CA6B) & 0xFFFF_FFFF
        z = ((z ^ (z >> 13)) * 0xC2B2_AE35) & 0xFFFF_FFFF
        states.append((z ^ (z >> 16)) or 1)
    return states


def _xorshift32(m: Module, state: Signal) -> None:
    """Advance ``state`` one xorshift32 step per cycle (Marsaglia 13/17/5)."""
    a = state ^ (state << 13)[:32]
    b = a ^ (a >> 17)
    m.d.sync += state.eq(b ^ (b << 5)[:32])


def _rate(value: float, name: str) -> int:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"fault channel {name} must be a probability in [0, 1], not {value!r}")
    return round(value * ONE)


def channel_settings(faults: FaultConfig, bits: int, windows: int = 2,
                     delay_limit: int = 15) -> dict[str, int]:
    """The port values that give ``faults`` on a channel of ``bits`` (flit + sop) bits;
    ValueError (one line naming the parameter) when one is out of range."""
    if len(faults.down) > windows:
        raise ValueError(f"fault channel down: {len(faults.down)} windows given, the channel "
                         f"has {windows}")
    if not 1 <= faults.burst_bits <= bits:
        raise ValueError(f"fault channel burst_bits must be in [1, {bits}], "
                         f"not {faults.burst_bits!r}")
    if not 1 <= faults.delay_max <= delay_limit:
        raise ValueError(f"fault channel delay_max must be in [1, {delay_limit}], "
                         f"not {faults.delay_max!r}")
    flit_error = 1.0 - (1.0 - _check(faults.ber, "ber")) ** bits
    values = {"thr_ber": _rate(flit_error, "ber"),
              "thr_burst": _rate(faults.burst_rate, "burst_rate"),
              "thr_drop": _rate(faults.drop_rate, "drop_rate"),
              "thr_dup": _rate(faults.dup_rate, "dup_rate"),
              "thr_delay": _rate(faults.delay_rate, "delay_rate"),
              "burst_bits": faults.burst_bits, "delay_max": faults.delay_max}
    padded = list(faults.down) + [(0, 0)] * (windows - len(faults.down))
    for i, (start, cycles) in enumerate(padded):
        if start < 0 or cycles < 0 or (i < len(faults.down) and cycles < 1):
            raise ValueError(f"fault channel down window {i} ({start}, {cycles}): start must "
                             f"be >= 0 and cycles >= 1")
        values[f"down_start_{i}"], values[f"down_cycles_{i}"] = start, cycles
    return values


def _check(value: float, name: str) -> float:
    _rate(value, name)
    return value


class FaultChannel(wiring.Component):
    """One direction of a link wire with seeded HDL faults (see the module docstring).

    Parameters: ``width`` flit bits (>= 1), ``seed`` (any int), ``kinds`` the fault kinds
    built (a subset of ``FAULT_KINDS``; the others cost no logic), ``windows`` link-down
    windows (>= 1), ``depth`` of the queue behind duplicates and delays (>= 2)."""

    def __init__(self, width: int, seed: int = 0, kinds: tuple[str, ...] = FAULT_KINDS,
                 windows: int = 2, depth: int = 16):
        check_int("FaultChannel", "width", width, 1)
        unknown = [k for k in kinds if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"FaultChannel: unknown fault kind {unknown[0]!r}: choose from "
                             f"{', '.join(FAULT_KINDS)}")
        check_int("FaultChannel", "windows", windows, 1)
        check_int("FaultChannel", "depth", depth, 2)
        self.width, self.bits, self.seed = width, width + 1, seed
        self.kinds, self.windows, self.depth = tuple(kinds), windows, depth
        members = {"tx_valid": In(1), "tx_sop": In(1), "tx_flit": In(width),
                   "rx_valid": Out(1), "rx_sop": Out(1), "rx_flit": Out(width),
                   "arm": In(1), "burst_bits": In(range(self.bits + 1)), "delay_max": In(4)}
        members.update({f"thr_{k}": In(33) for k in RATE_KINDS})
        for i in range(windows):
            members[f"down_start_{i}"] = In(32)
            members[f"down_cycles_{i}"] = In(32)
        members.update({f"count_{name}": Out(32) for name in COUNTERS})
        super().__init__(members)

    def _hit(self, m: Module, rng: dict, kind: str) -> Signal:
        """High when this cycle's draw of ``kind`` is below its threshold (and built)."""
        hit = Signal(name=f"hit_{kind}")
        if kind in self.kinds:
            m.d.comb += hit.eq(rng[kind] < getattr(self, f"thr_{kind}"))
        return hit

    def _scaled(self, byte, limit):
        """A value in [0, limit) from 8 random bits, without a divider; a constant ``limit``
        as shifted copies of ``byte`` for its set bits (no DSP block on an FPGA)."""
        if not isinstance(limit, int):
            return (byte * limit) >> 8
        terms = [byte << i for i in range(limit.bit_length()) if limit >> i & 1]
        return sum(terms[1:], terms[0]) >> 8

    def _masks(self, m: Module, rng: dict, hits: dict) -> tuple[Signal, Signal]:
        """The flip mask of this cycle's flit and its number of flipped bits."""
        aux, bits = rng["aux"], self.bits
        ber_pos = Signal(range(bits))
        burst_pos = Signal(range(bits))
        m.d.comb += [ber_pos.eq(self._scaled(aux[0:8], bits)),
                     burst_pos.eq(self._scaled(aux[8:16], bits))]
        run = Signal(2 * bits)   # burst_bits ones, shifted to the burst start, clipped
        m.d.comb += run.eq(((Const(1, 2 * bits) << self.burst_bits) - 1) << burst_pos)
        mask = Signal(bits)
        ber_mask = Mux(hits["ber"], Const(1, bits) << ber_pos, 0)
        m.d.comb += mask.eq(ber_mask ^ Mux(hits["burst"], run[:bits], 0))
        flips = Signal(range(bits + 1))
        m.d.comb += flips.eq(sum(mask[i] for i in range(bits)))
        return mask, flips

    def _counter(self, m: Module, name: str, inc, active) -> None:
        port = getattr(self, f"count_{name}")
        with m.If(active):
            m.d.sync += port.eq(port + inc)

    def elaborate(self, platform) -> Module:
        m = Module()
        seeds = split_seed(self.seed, len(_GENERATORS))
        rng = {name: Signal(32, init=s, name=f"rng_{name}")
               for name, s in zip(_GENERATORS, seeds, strict=True)}
        for state in rng.values():
            _xorshift32(m, state)

        armed, cycle = Signal(), Signal(32)
        live = Signal()             # faults apply in this cycle
        m.d.comb += live.eq(armed | self.arm)
        m.d.sync += armed.eq(live)
        with m.If(live):
            m.d.sync += cycle.eq(cycle + 1)

        down = Signal()
        if "down" in self.kinds:
            in_window = [(cycle >= getattr(self, f"down_start_{i}")) &
                         (cycle - getattr(self, f"down_start_{i}") <
                          getattr(self, f"down_cycles_{i}")) for i in range(self.windows)]
            m.d.comb += down.eq(live & Cat(*in_window).any())
        hits = {k: Signal(name=f"fault_{k}") for k in RATE_KINDS}
        for kind in RATE_KINDS:
            m.d.comb += hits[kind].eq(live & self._hit(m, rng, kind))
        mask, flips = self._masks(m, rng, hits)

        flit = self.tx_valid
        lost_down, dropped = Signal(), Signal()
        m.d.comb += [lost_down.eq(flit & down), dropped.eq(flit & ~down & hits["drop"])]
        keep = Signal()
        m.d.comb += keep.eq(flit & ~down & ~hits["drop"])

        # The queue: the (corrupted) flit and whether it is to be sent twice.
        m.submodules.queue = queue = SyncFIFO(width=self.bits + 1, depth=self.depth)
        corrupted = Signal(self.bits)
        m.d.comb += corrupted.eq(Cat(self.tx_flit, self.tx_sop) ^ mask)
        m.d.comb += [queue.w_data.eq(Cat(corrupted, hits["dup"])), queue.w_en.eq(keep)]
        overflow = Signal()
        m.d.comb += overflow.eq(keep & ~queue.w_rdy)

        stall = Signal(16)
        delay = Signal(4)
        m.d.comb += delay.eq(1 + self._scaled(rng["aux"][16:24], self.delay_max))
        delayed = Signal()
        m.d.comb += delayed.eq(keep & queue.w_rdy & hits["delay"])

        # Output: a queued flit unless stalled; a duplicate stays for a second cycle.
        second = Signal()        # the head's first copy has gone out
        send = Signal()
        m.d.comb += send.eq(queue.r_rdy & (stall == 0))
        head_dup = queue.r_data[self.bits]
        m.d.comb += [self.rx_valid.eq(send), self.rx_flit.eq(queue.r_data[:self.width]),
                     self.rx_sop.eq(queue.r_data[self.width])]
        with m.If(send):
            with m.If(head_dup & ~second):
                m.d.sync += second.eq(1)
            with m.Else():
                m.d.sync += second.eq(0)
                m.d.comb += queue.r_en.eq(1)
        m.d.sync += stall.eq(Mux(stall != 0, stall - 1, 0) + Mux(delayed, delay, 0))

        accepted = keep & queue.w_rdy
        self._counter(m, "flits", 1, flit)
        self._counter(m, "down_lost", 1, lost_down)
        self._counter(m, "dropped", 1, dropped)
        self._counter(m, "overflowed", 1, overflow)
        self._counter(m, "bit_flips", flips, accepted)
        self._counter(m, "flipped_flits", 1, accepted & (mask != 0))
        self._counter(m, "bursts", 1, accepted & hits["burst"])
        self._counter(m, "duplicated", 1, accepted & hits["dup"])
        self._counter(m, "delays", 1, delayed)
        self._counter(m, "forwarded", 1, send)
        return m
