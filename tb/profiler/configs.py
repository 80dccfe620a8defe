"""The profiler bench's configurations (``CONFIGS``: ProfilerParams by name) and how they
travel to the cocotb tests (environment)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from model.profiler import DEFAULT_BINS
from tb.common.runner import BenchConfig


def _bits_for(n: int) -> int:
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class ProfilerParams(BenchConfig):
    """The constructor arguments of ``hdl.profiler.Profiler``."""
    ENTRY = "tb/profiler/test_profiler.py"
    ENV_OPTIONAL = True   # the default configuration when run alone
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


CONFIGS = {
    # 3 VFs: vf id 3 is representable and must be ignored; a small tag space reuses tags.
    "odd": ProfilerParams(),
    # 8-bit saturating counters, 5-bit wrapping latencies: both limits reached in a run.
    "narrow": ProfilerParams(n_vfs=2, tag_bits=2, latency_bits=5, n_bins=6, counter_bits=8,
                             words_bits=2, link_word_bits=1),
}
