"""Named system configurations, and the one way a tool turns a name or a JSON file into a
``SystemConfig`` (``make verilog CONFIG=...``).

- ``default``: ``SystemConfig()``, what ``make sim`` and the tests build.
- ``small``: the least hardware that still runs the whole protocol (an FPGA board): 2 VFs,
  2 slots per device, 81-word images, 2 link replay slots and packets of one STATE_DATA
  message, router queues of 2 and 4 requests in flight per VF, 4-bit VM tags, 8 latency
  bins of 16-bit profiler counters, 2 interrupt fault records. The link stays 64 bits wide:
  the system bench's phase-fault tap (tb/system/phase_fault.py) reads a migration message's
  header from the first flit of its frame, which a 32-bit flit does not hold.
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import ParameterError
from .config import SystemConfig
from .protocol import HEADER_WORDS
from .state import ImageLayout

_SMALL_LAYOUT = ImageLayout(csr_words=8, msix_vectors=2, mem_words=64, block_words=16)
_SMALL_CHUNK = 16

PRESETS: dict[str, SystemConfig] = {
    "default": SystemConfig(),
    "small": SystemConfig(
        n_vfs=2, host_slots=2, offload_slots=2, layout=_SMALL_LAYOUT, chunk_words=_SMALL_CHUNK,
        tag_bits=4, link_replay_slots=2,
        # the longest STATE_DATA message (the stop-copy's CSR/MSI-X/PBA words) in one packet
        link_max_payload_words=max(_SMALL_CHUNK, _SMALL_LAYOUT.meta_words) + HEADER_WORDS + 1,
        router_queue_depth=2, router_max_in_flight=4, profiler_bins=8,
        profiler_counter_bits=16, profiler_latency_bits=16, profiler_words_bits=1,
        irq_fault_depth=2),
}


def load_config(spec: str) -> SystemConfig:
    """The preset named ``spec``, else the JSON file at path ``spec`` (an object of
    ``SystemConfig`` fields, as ``SystemConfig.to_dict``). Raises ValueError with one line
    saying what is wrong."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if path.suffix != ".json" and not path.exists():
        raise ParameterError(f"unknown preset {spec!r}: choose {', '.join(PRESETS)} "
                             f"or a JSON file")
    return SystemConfig.from_dict(_read_json(path))


def _read_json(path: Path) -> object:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ParameterError(f"cannot read configuration {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParameterError(f"configuration {path} is not JSON: {exc.msg} at line "
                             f"{exc.lineno} column {exc.colno}") from None
