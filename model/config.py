"""System parameters (docs/design.md `system`), validated once, shared by HDL, tb and reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import IntEnum

from .common import ParameterError, check_int
from .irq_remap import RemapParams
from .link import (
    DEFAULT_MAX_PAYLOAD,
    LINK_WIDTHS,
    MAX_PAYLOAD_LIMIT,
    MAX_REPLAY_SLOTS,
    MAX_RX_BUFFER_FLITS,
    LinkParams,
)
from .protocol import DEFAULT_CHUNK_WORDS, MAX_VFS
from .regmap import PROFILER_ROW_STRIDE
from .state import ImageLayout
from .vfio import ALL_FLAGS, MigrationFlags, supported_states

# A VF row of the profiler window holds the histogram and these other registers
# (hdl.profiler.vf_register_names; a test keeps the two in step).
PROFILER_OTHER_VF_REGS = 7
MAX_PROFILER_BINS = PROFILER_ROW_STRIDE // 4 - PROFILER_OTHER_VF_REGS


class Device(IntEnum):
    HOST = 0
    OFFLOAD = 1

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class SystemConfig:
    n_vfs: int = 8
    host_slots: int = 8
    offload_slots: int = 4
    layout: ImageLayout = field(default_factory=ImageLayout)
    host_latency: int = 12     # cycles from accepting a request to its response (host: slow)
    offload_latency: int = 3   # offload device: fast
    chunk_words: int = DEFAULT_CHUNK_WORDS  # STATE_DATA payload size during full-image rounds
    precopy_threshold_blocks: int = 2  # converged when dirty blocks <= this
    max_precopy_rounds: int = 8        # ... or after this many dirty rounds
    timeout_cycles: int = 8192         # handshake timeout -> abort
    flags: MigrationFlags = ALL_FLAGS
    tag_bits: int = 8
    # Sizes of the parts of the system top (hdl/system/top.py).
    link_width: int = 64               # flit bits of each link wire
    link_replay_slots: int = 8         # packets a link port keeps until acknowledged
    link_max_payload_words: int = DEFAULT_MAX_PAYLOAD  # words per link packet
    link_rx_buffer_flits: int | None = None  # rows per class; None: LinkParams' default
    router_queue_depth: int = 8        # requests a held VF can have waiting in the router
    router_max_in_flight: int = 15     # requests one VF can have inside the devices
    profiler_bins: int = 16            # latency histogram bins
    profiler_counter_bits: int = 32    # width of every profiler counter (saturating)
    profiler_latency_bits: int = 24    # profiler timestamps: latencies modulo 2**this
    profiler_words_bits: int = 8       # payload words of one request, as the profiler counts
    irq_fault_depth: int = 8           # interrupt remapper fault records kept for IRQ_FAULT

    def __post_init__(self):
        checks = {
            "n_vfs": (1, MAX_VFS - 1), "host_slots": (1, 255), "offload_slots": (1, 255),
            "host_latency": (2, 4096), "offload_latency": (2, 4096),
            "chunk_words": (1, 4096), "precopy_threshold_blocks": (0, 1 << 20),
            "max_precopy_rounds": (1, 255), "timeout_cycles": (16, 1 << 30), "tag_bits": (1, 16),
            "link_max_payload_words": (1, MAX_PAYLOAD_LIMIT), "router_max_in_flight": (1, 255),
            "profiler_counter_bits": (8, 32), "irq_fault_depth": (1, 256),
        }
        for name, (lo, hi) in checks.items():
            check_int("SystemConfig", name, getattr(self, name), lo, hi)
        supported_states(self.flags)  # raises for flags without STOP_COPY
        self._check_placement()
        self._check_link()
        self._check_power_of_two("router_queue_depth", 1, 1024)
        self._check_profiler()

    def _check_placement(self):
        if self.n_vfs > self.host_slots + self.offload_slots:
            raise ValueError(f"SystemConfig.n_vfs={self.n_vfs} exceeds the slots of both devices "
                             f"({self.host_slots} + {self.offload_slots})")
        if self.n_vfs > self.host_slots:
            raise ValueError(f"SystemConfig.n_vfs={self.n_vfs}: every VF starts on the host, "
                             f"which has only {self.host_slots} slots")

    def _check_power_of_two(self, name: str, lo: int, hi: int) -> None:
        value = check_int("SystemConfig", name, getattr(self, name), lo, hi)
        if value & (value - 1):
            raise ParameterError(f"SystemConfig {name} must be a power of two between {lo} "
                                 f"and {hi}, not {value}")

    def _check_link(self):
        check_int("SystemConfig", "link_width", self.link_width, None)
        if self.link_width not in LINK_WIDTHS:
            raise ParameterError(f"SystemConfig link_width must be one of "
                                 f"{', '.join(map(str, LINK_WIDTHS))}, not {self.link_width!r}")
        self._check_power_of_two("link_replay_slots", 2, MAX_REPLAY_SLOTS)
        if self.link_rx_buffer_flits is not None:
            # at least two maximum packets, as LinkParams requires
            rows = LinkParams(self.link_width, max_payload_words=self.link_max_payload_words)
            self._check_power_of_two("link_rx_buffer_flits", 2 * rows.slot_rows,
                                     MAX_RX_BUFFER_FLITS)

    def _check_profiler(self):
        """The profiler's bounds (hdl/profiler.py), and a VF row that fits the window."""
        check_int("SystemConfig", "profiler_latency_bits", self.profiler_latency_bits, 2,
                  self.profiler_counter_bits)
        check_int("SystemConfig", "profiler_bins", self.profiler_bins, 2,
                  min(self.profiler_latency_bits + 1, MAX_PROFILER_BINS))
        check_int("SystemConfig", "profiler_words_bits", self.profiler_words_bits, 1,
                  min(16, self.profiler_counter_bits - 2))

    def slots(self, device: Device) -> int:
        return self.host_slots if device == Device.HOST else self.offload_slots

    def latency(self, device: Device) -> int:
        return self.host_latency if device == Device.HOST else self.offload_latency

    @property
    def max_chunk_words(self) -> int:
        """Longest STATE_DATA payload a migration sends: a full-image chunk, a dirty block or
        the CSR/MSI-X/PBA words of a stop-copy (the DMA's and the protocol decoder's bound)."""
        return max(self.chunk_words, self.layout.block_words, self.layout.meta_words)

    @property
    def irq_remap(self) -> RemapParams:
        """The interrupt remapper: one entry per (VF, MSI-X vector), default field widths."""
        return RemapParams(self.n_vfs, self.layout.msix_vectors,
                           fault_depth=self.irq_fault_depth)

    @property
    def link(self) -> LinkParams:
        """The parameters of both link ports (the other ones at LinkParams' defaults)."""
        return LinkParams(link_width=self.link_width, replay_slots=self.link_replay_slots,
                          max_payload_words=self.link_max_payload_words,
                          rx_buffer_flits=self.link_rx_buffer_flits)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flags"] = int(self.flags)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> SystemConfig:
        """The inverse of ``to_dict``; a key left out keeps its default (``layout``'s too).
        Raises ValueError naming an unknown key or a bad value."""
        values = dict(_known_keys("SystemConfig", d, cls))
        if "layout" in values:
            values["layout"] = ImageLayout(**_known_keys("SystemConfig layout",
                                                         values["layout"], ImageLayout))
        if "flags" in values:
            values["flags"] = _flags(values["flags"])
        return cls(**values)


def _known_keys(what: str, d: object, cls: type) -> Mapping:
    """``d`` itself, once it is a mapping whose keys are all fields of dataclass ``cls``."""
    if not isinstance(d, Mapping):
        raise ParameterError(f"{what} must be an object of fields, not {d!r}")
    valid = [f.name for f in fields(cls)]
    unknown = [key for key in d if key not in valid]
    if unknown:
        raise ParameterError(f"{what} has no field {unknown[0]!r}: valid fields are "
                             f"{', '.join(valid)}")
    return d


def _flags(value: object) -> MigrationFlags:
    """``to_dict``'s int back to MigrationFlags; bits VFIO does not define are refused."""
    check_int("SystemConfig", "flags", value, 0, int(ALL_FLAGS))
    if value & ~int(ALL_FLAGS):
        raise ParameterError(f"SystemConfig flags must be a combination of {int(ALL_FLAGS)} "
                             f"({ALL_FLAGS!r}), not {value}")
    return MigrationFlags(value)
