"""System parameters (docs/design.md `system`), validated once, shared by HDL, tb and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum

from .common import check_int
from .irq_remap import RemapParams
from .protocol import MAX_VFS
from .state import ImageLayout
from .vfio import ALL_FLAGS, MigrationFlags, supported_states


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
    chunk_words: int = 64      # STATE_DATA payload size during full-image rounds
    precopy_threshold_blocks: int = 2  # converged when dirty blocks <= this
    max_precopy_rounds: int = 8        # ... or after this many dirty rounds
    timeout_cycles: int = 8192         # handshake timeout -> abort
    flags: MigrationFlags = ALL_FLAGS
    tag_bits: int = 8

    def __post_init__(self):
        checks = {
            "n_vfs": (1, MAX_VFS - 1), "host_slots": (1, 255), "offload_slots": (1, 255),
            "host_latency": (2, 4096), "offload_latency": (2, 4096),
            "chunk_words": (1, 4096), "precopy_threshold_blocks": (0, 1 << 20),
            "max_precopy_rounds": (1, 255), "timeout_cycles": (16, 1 << 30), "tag_bits": (1, 16),
        }
        for name, (lo, hi) in checks.items():
            check_int("SystemConfig", name, getattr(self, name), lo, hi)
        supported_states(self.flags)  # raises for flags without STOP_COPY
        if self.n_vfs > self.host_slots + self.offload_slots:
            raise ValueError(f"SystemConfig.n_vfs={self.n_vfs} exceeds the slots of both devices "
                             f"({self.host_slots} + {self.offload_slots})")
        if self.n_vfs > self.host_slots:
            raise ValueError(f"SystemConfig.n_vfs={self.n_vfs}: every VF starts on the host, "
                             f"which has only {self.host_slots} slots")

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
        return RemapParams(self.n_vfs, self.layout.msix_vectors)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flags"] = int(self.flags)
        return d
