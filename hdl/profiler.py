"""The hardware profiler (docs/design.md ``profiler``): per-VF workload counters, read by window.

The profiler only *watches* the system: it sees each VM request as it is accepted and each
response as it is delivered, which device is busy, and how many words cross the link. It
counts what ``model.profiler.CounterSnapshot`` and ``DeviceSnapshot`` hold, in the order of
their fields (``PROFILER_VF_REGS``, ``PROFILER_DEVICE_REGS``), so the VMM-side profiler reads
the hardware with the same formats as the fast simulator produces.

Latency is measured here, not by the system: a timestamp table indexed by (vf, tag) records
the cycle of each request (and its payload words); the response with that (vf, tag) reads it
back. The system only passes vf and tag, and the VM's tags already name its outstanding
requests (a VF's outstanding requests carry distinct tags).
"""

from __future__ import annotations

import dataclasses

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.common import bits_for, check_int
from model.config import Device
from model.profiler import DEFAULT_BINS, CounterSnapshot, DeviceSnapshot

MAX_VFS = 255        # the device registers are row n_vfs of an 8-bit VF address
SLOT_COUNT_BITS = 8  # slots per device <= 255 (SystemConfig)
N_LINK_DIRECTIONS = 2  # DeviceSnapshot.link_words: 0 toward the offload device, 1 toward the host

# DeviceSnapshot fields that are configuration, not counts: the VMM takes them from
# SystemConfig (the CAPS register), so they have no register here.
CONFIG_FIELDS = ("link_words_per_cycle", "slots")
# Per-VF registers the model has no field for (yet): the window's highest occupancy.
VF_EXTRA_REGS = ("occupancy_max",)


def vf_register_names(n_bins: int = DEFAULT_BINS) -> tuple[str, ...]:
    """Per-VF register indices: ``CounterSnapshot``'s fields in order (``vf`` is the row
    address; ``histogram`` is one register per bin), then ``VF_EXTRA_REGS``."""
    names: list[str] = []
    for f in dataclasses.fields(CounterSnapshot):
        if f.name == "vf":
            continue
        if f.name == "histogram":
            names += [f"histogram[{b}]" for b in range(n_bins)]
        else:
            names.append(f.name)
    return tuple(names) + VF_EXTRA_REGS


def device_register_names() -> tuple[str, ...]:
    """Device-row register indices: ``DeviceSnapshot``'s counted fields in order, a tuple
    field as one register per element (``busy[0]`` is ``Device.HOST``)."""
    names: list[str] = []
    for f in dataclasses.fields(DeviceSnapshot):
        if f.name in CONFIG_FIELDS:
            continue
        if isinstance(f.default, tuple):
            names += [f"{f.name}[{i}]" for i in range(len(f.default))]
        else:
            names.append(f.name)
    return tuple(names)


# The register map (model/regmap.py) refers to these: index i of the VF row / device row.
PROFILER_VF_REGS = vf_register_names()
PROFILER_DEVICE_REGS = device_register_names()

_VF_COUNTERS = ("requests", "bytes", "latency_sum", "latency_max", "occupancy")
_DEVICE_COUNTERS = ("window", "busy", "link_words")


def _check_model_fields(n_bins: int) -> None:
    """Fail at construction, not silently, if the model grew a field with no counter."""
    known_vf = {"device", *_VF_COUNTERS, *VF_EXTRA_REGS}
    for name in vf_register_names(n_bins):
        if name.split("[")[0] not in known_vf | {"histogram"}:
            raise NotImplementedError(f"Profiler: model field CounterSnapshot.{name} has no "
                                      f"counter in hdl/profiler.py")
    for name in device_register_names():
        if name.split("[")[0] not in {*_DEVICE_COUNTERS, "slots_used"}:
            raise NotImplementedError(f"Profiler: model field DeviceSnapshot.{name} has no "
                                      f"counter in hdl/profiler.py")


def _saturating_add(value, increment, width: int):
    """``value`` (``width`` bits) + ``increment``, held at all ones instead of wrapping."""
    total = value + increment
    return Mux(total[width:].any(), (1 << width) - 1, total[:width])


class Profiler(wiring.Component):
    """Per-VF request, byte, latency, histogram and occupancy counters; device busy and link
    counters; a snapshot bank read by (row, index).

    Parameters
    ----------
    n_vfs : int
        VFs 0..n_vfs-1 are counted (1..255); events naming a VF >= n_vfs are ignored.
    tag_bits : int
        Width of the VM's tag (1..16). A VF has at most 2**tag_bits requests outstanding.
    latency_bits : int
        Width of the timestamps (2..counter_bits). A latency is measured modulo
        2**latency_bits: a request outstanding that long or longer *wraps* (pick it above the
        longest hold a migration can cause; the default, 24, is 16.7 M cycles).
    n_bins : int
        Latency histogram bins (2..latency_bits+1), ``model.profiler.latency_bin``'s.
    counter_bits : int
        Width of every counter (8..32). Counters *saturate* at 2**counter_bits - 1, they never
        wrap. The request count and the histogram bins cannot saturate in a window shorter
        than 2**counter_bits cycles (one response per cycle at most); latency_sum and
        occupancy can (they grow up to 2**tag_bits per cycle).
    words_bits : int
        Width of a request's payload word count (1..16); bytes = 4 * words.
    link_word_bits : int
        Width of the per-cycle link word counts (1..8).

    Members
    -------
    req_seen : In({valid, vf, tag, words})
        A VM request accepted this cycle (the handshake of the system's ``req``): VF, its
        tag, its payload words. No backpressure: this port only observes.
    resp_seen : In({valid, vf, tag})
        A response delivered this cycle (the handshake of the system's ``resp``). Its
        latency is its cycle minus the cycle of the request with the same (vf, tag); a
        request and a response with the same (vf, tag) in one cycle are a tag being reused
        (the response answers the earlier request). A request is outstanding from its cycle
        to the cycle before its response; ``occupancy`` sums, over the window's cycles, the
        VF's outstanding requests.
    busy : In(len(Device))
        Bit ``d``: ``Device(d)``'s VF unit is busy this cycle (counted in ``busy[d]``).
    link_words : In(ArrayLayout(link_word_bits, 2))
        32-bit words crossing the link this cycle, per direction (0: toward the offload
        device, 1: toward the host).
    vf_device : In(n_vfs)
        Bit ``v``: VF ``v`` runs on the offload device. Sampled by ``snapshot``.
    slots_used : In(ArrayLayout(8, len(Device)))
        Slots in use per device. Sampled by ``snapshot``.
    snapshot : In(1)
        One-cycle pulse: closes the window. The window's counts (every event before this
        cycle) go to the snapshot bank, and counting restarts with this cycle's events:
        nothing is lost or counted twice. ``window`` = cycles from the previous snapshot (or
        reset) to this one.
    rd_en : In(1), rd_vf : In(bits_for(n_vfs + 1)), rd_index : In(..), rd_data : Out(32)
        Snapshot-bank read: row ``rd_vf`` < n_vfs is a VF (indices ``vf_register_names``),
        row n_vfs the device (indices ``PROFILER_DEVICE_REGS``); anything else reads 0.
        ``rd_data`` is valid the cycle after ``rd_en`` and held until the next read (the
        system's CSR read timing).

    Latency: events are counted one cycle after they are seen. A snapshot pulsed in cycle
    ``c`` is readable from a read presented in cycle ``c + 2`` on (data in ``c + 3``) and
    stays until the next snapshot, while the live counters go on counting.

    Size: the timestamp table is one memory of 2**(tag_bits + bits_for(n_vfs)) words of
    latency_bits + words_bits bits. The counters are flip-flops: per VF, n_bins + 5 of
    ``counter_bits`` and occupancy_max, twice (live and snapshot), plus a read multiplexer
    over all of them: fine for tens of VFs; beyond that the banks belong in memories. n_vfs
    is at most 255 because the device row is row n_vfs of an 8-bit row address.
    """

    def __init__(self, n_vfs: int, *, tag_bits: int = 8, latency_bits: int = 24,
                 n_bins: int = DEFAULT_BINS, counter_bits: int = 32, words_bits: int = 8,
                 link_word_bits: int = 2):
        check_int("Profiler", "n_vfs", n_vfs, 1, MAX_VFS)
        check_int("Profiler", "tag_bits", tag_bits, 1, 16)
        check_int("Profiler", "counter_bits", counter_bits, 8, 32)
        check_int("Profiler", "latency_bits", latency_bits, 2, counter_bits)
        check_int("Profiler", "n_bins", n_bins, 2, latency_bits + 1)
        check_int("Profiler", "words_bits", words_bits, 1, min(16, counter_bits - 2))
        check_int("Profiler", "link_word_bits", link_word_bits, 1, 8)
        _check_model_fields(n_bins)
        self.n_vfs, self.tag_bits, self.latency_bits = n_vfs, tag_bits, latency_bits
        self.n_bins, self.counter_bits = n_bins, counter_bits
        self.words_bits, self.link_word_bits = words_bits, link_word_bits
        self.vf_regs = vf_register_names(n_bins)
        self.device_regs = PROFILER_DEVICE_REGS
        self.vf_bits = vf_bits = bits_for(n_vfs)
        n_regs = max(len(self.vf_regs), len(self.device_regs))
        super().__init__({
            "req_seen": In(wiring.Signature({
                "valid": Out(1), "vf": Out(vf_bits), "tag": Out(tag_bits),
                "words": Out(words_bits)})),
            "resp_seen": In(wiring.Signature({
                "valid": Out(1), "vf": Out(vf_bits), "tag": Out(tag_bits)})),
            "busy": In(len(Device)),
            "link_words": In(data.ArrayLayout(link_word_bits, N_LINK_DIRECTIONS)),
            "vf_device": In(n_vfs),
            "slots_used": In(data.ArrayLayout(SLOT_COUNT_BITS, len(Device))),
            "snapshot": In(1),
            "rd_en": In(1),
            "rd_vf": In(bits_for(n_vfs + 1)),
            "rd_index": In(bits_for(n_regs)),
            "rd_data": Out(32),
        })

    @classmethod
    def for_system(cls, config) -> Profiler:
        """The profiler of a ``model.config.SystemConfig`` system, sized by its profiler
        fields; the link counts are words per flit of ``config.link_width``."""
        return cls(config.n_vfs, tag_bits=config.tag_bits,
                   latency_bits=config.profiler_latency_bits, n_bins=config.profiler_bins,
                   counter_bits=config.profiler_counter_bits,
                   words_bits=config.profiler_words_bits,
                   link_word_bits=config.link.words_per_flit.bit_length())

    def elaborate(self, platform):
        m = Module()
        n, cb, lb = self.n_vfs, self.counter_bits, self.latency_bits
        out_bits = self.tag_bits + 1  # up to 2**tag_bits outstanding per VF
        req, resp = self.req_seen, self.resp_seen

        # ---- stage 0: timestamp the request, look up the response's request
        now = Signal(lb)
        m.d.sync += now.eq(now + 1)  # wraps: latencies are differences modulo 2**lb
        entry = data.StructLayout({"time": lb, "words": self.words_bits})
        m.submodules.stamps = stamps = Memory(shape=entry, depth=1 << (self.tag_bits
                                                                      + self.vf_bits), init=[])
        write = stamps.write_port()
        read = stamps.read_port()  # not transparent: a tag reused in the cycle reads the old
        m.d.comb += [
            write.addr.eq(Cat(req.tag, req.vf)),
            write.data.time.eq(now), write.data.words.eq(req.words),
            write.en.eq(req.valid & (req.vf < n)),
            read.addr.eq(Cat(resp.tag, resp.vf)),
        ]

        # ---- stage 1: everything seen in cycle c is counted in cycle c + 1
        s1_now = Signal(lb)
        s1_req, s1_resp = Signal(), Signal()
        s1_req_vf, s1_resp_vf = Signal(self.vf_bits), Signal(self.vf_bits)
        s1_close = Signal()
        s1_busy = Signal(len(Device))
        s1_link = Signal.like(self.link_words)
        primed = Signal()  # stage 1 holds a real cycle (not the one before reset ended)
        m.d.sync += [
            # A VF id >= n_vfs matches no counter below: ignored without a test here.
            s1_now.eq(now), s1_req.eq(req.valid), s1_req_vf.eq(req.vf),
            s1_resp.eq(resp.valid), s1_resp_vf.eq(resp.vf),
            s1_close.eq(self.snapshot), s1_busy.eq(self.busy), s1_link.eq(self.link_words),
            primed.eq(1),
        ]
        latency = Signal(lb)
        m.d.comb += latency.eq(s1_now - read.data.time)
        length = Signal(range(lb + 1))  # latency.bit_length()
        for i in range(lb):
            with m.If(latency[i]):
                m.d.comb += length.eq(i + 1)
        latency_bin = Signal(range(self.n_bins))
        m.d.comb += latency_bin.eq(Mux(length >= self.n_bins - 1, self.n_bins - 1, length))
        nbytes = Signal(self.words_bits + 2)
        m.d.comb += nbytes.eq(read.data.words << 2)

        def restart(counter):
            """The value a counter continues from: 0 in a snapshot cycle."""
            return Mux(s1_close, 0, counter)

        def counter(name, width=cb):
            return Signal(width, name=name)

        live: dict[str, list[Signal]] = {}
        shadow: dict[str, list[Signal]] = {}
        hist_names = [f"histogram[{b}]" for b in range(self.n_bins)]
        for name in (*_VF_COUNTERS, *hist_names, *VF_EXTRA_REGS):
            width = out_bits if name == "occupancy_max" else cb
            key = name.replace("[", "_").rstrip("]")
            live[name] = [counter(f"{key}_{v}", width) for v in range(n)]
            shadow[name] = [counter(f"snap_{key}_{v}", width) for v in range(n)]
        shadow["device"] = [Signal(name=f"snap_device_{v}") for v in range(n)]
        outstanding = [Signal(out_bits, name=f"outstanding_{v}") for v in range(n)]

        for v in range(n):
            done = Signal(name=f"done_{v}")
            arrived = Signal(name=f"arrived_{v}")
            open_now = Signal(out_bits, name=f"outstanding_now_{v}")
            m.d.comb += [
                done.eq(s1_resp & (s1_resp_vf == v)),
                arrived.eq(s1_req & (s1_req_vf == v)),
                open_now.eq(outstanding[v] + arrived - done),
            ]
            m.d.sync += outstanding[v].eq(open_now)

            def count(name, increment, v=v):
                m.d.sync += live[name][v].eq(_saturating_add(restart(live[name][v]),
                                                             increment, cb))

            def peak(name, value, v=v):
                old = restart(live[name][v])
                m.d.sync += live[name][v].eq(Mux(value > old, value, old))

            count("requests", done)
            count("bytes", Mux(done, nbytes, 0))
            count("latency_sum", Mux(done, latency, 0))
            peak("latency_max", Mux(done, latency, 0))
            for b, name in enumerate(hist_names):
                count(name, done & (latency_bin == b))
            count("occupancy", open_now)
            peak("occupancy_max", open_now)

        dev_live = {"window": counter("window")}
        dev_shadow = {"window": counter("snap_window")}
        m.d.sync += dev_live["window"].eq(_saturating_add(restart(dev_live["window"]),
                                                          primed, cb))
        for d in range(len(Device)):
            name = f"busy[{d}]"
            dev_live[name], dev_shadow[name] = counter(f"busy_{d}"), counter(f"snap_busy_{d}")
            m.d.sync += dev_live[name].eq(_saturating_add(restart(dev_live[name]),
                                                          s1_busy[d], cb))
        for i in range(N_LINK_DIRECTIONS):
            name = f"link_words[{i}]"
            dev_live[name] = counter(f"link_words_{i}")
            dev_shadow[name] = counter(f"snap_link_words_{i}")
            m.d.sync += dev_live[name].eq(_saturating_add(restart(dev_live[name]),
                                                          s1_link[i], cb))
        for d in range(len(Device)):
            dev_shadow[f"slots_used[{d}]"] = counter(f"snap_slots_used_{d}", SLOT_COUNT_BITS)

        # ---- the snapshot bank
        with m.If(s1_close):
            for name, signals in live.items():
                m.d.sync += [shadow[name][v].eq(signals[v]) for v in range(n)]
            m.d.sync += [dev_shadow[name].eq(sig) for name, sig in dev_live.items()]
        # Placement and slots describe the window's end: sampled in the pulse's own cycle.
        with m.If(self.snapshot):
            m.d.sync += [shadow["device"][v].eq(self.vf_device[v]) for v in range(n)]
            m.d.sync += [dev_shadow[f"slots_used[{d}]"].eq(self.slots_used[d])
                         for d in range(len(Device))]

        rd_value = Signal(32)
        with m.If(self.rd_en):
            m.d.sync += self.rd_data.eq(rd_value)
        with m.Switch(self.rd_vf):
            for v in range(n):
                with m.Case(v):
                    with m.Switch(self.rd_index):
                        for i, name in enumerate(self.vf_regs):
                            with m.Case(i):
                                m.d.comb += rd_value.eq(shadow[name][v])
            with m.Case(n):
                with m.Switch(self.rd_index):
                    for i, name in enumerate(self.device_regs):
                        with m.Case(i):
                            m.d.comb += rd_value.eq(dev_shadow[name])
        return m
