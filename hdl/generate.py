"""``python -m hdl.generate``: Verilog for every block and the system top (``make verilog``).

Writes ``<out>/<block>.v`` and a ``<block>.json`` sidecar (ports, parameters, clock/reset)
for each entry of ``BLOCKS``, elaborated with the default ``SystemConfig``.  A block whose
module does not exist yet is skipped with a warning; any other failure is an error.

``--config SPEC`` (``make verilog CONFIG=SPEC``) writes only the system top, for the preset
named SPEC (``model.presets.PRESETS``) or the JSON file SPEC (``SystemConfig`` fields), as
``<out>/<name>/system.v`` and ``system.json``, ``<name>`` the preset or the file's stem.
A bad SPEC is one line ``error: ...`` and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.config import Device, SystemConfig
from model.presets import load_config

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "build" / "verilog"


@dataclass(frozen=True)
class Block:
    name: str
    module: str     # hdl module holding the component class
    cls: str
    build: Callable[[type, SystemConfig], object]  # (component class, config) -> component
    parameters: Callable[[SystemConfig], dict]       # recorded in the JSON sidecar


def _host_params(config: SystemConfig) -> dict:
    return {"layout": vars(config.layout), "n_slots": config.host_slots}


BLOCKS: tuple[Block, ...] = (
    Block("vf_unit", "hdl.vf_unit", "VFUnit",
          lambda cls, c: cls(c.layout, c.host_slots, c.host_latency),
          lambda c: {**_host_params(c), "service_latency": c.host_latency}),
    Block("dma", "hdl.dma", "DMA",
          lambda cls, c: cls(c.layout, c.host_slots),
          _host_params),
    Block("crc32", "hdl.crc32", "CRC32Word", lambda cls, c: cls(), lambda c: {}),
    Block("packet_arbiter", "hdl.packet_arbiter", "PacketArbiter",
          lambda cls, c: cls(2), lambda c: {"n_inputs": 2}),
    Block("mig_copier", "hdl.mig_copier", "MigCopier",
          lambda cls, c: cls(c.layout, c.host_slots, c.n_vfs, c.chunk_words,
                             c.precopy_threshold_blocks, c.max_precopy_rounds),
          lambda c: {**_host_params(c), "n_vfs": c.n_vfs, "chunk_words": c.chunk_words}),
    Block("router", "hdl.router", "Router", lambda cls, c: cls.for_system(c),
          lambda c: {"config": c.to_dict()}),
    Block("irq_remap", "hdl.irq_remap", "IrqRemap",
          lambda cls, c: cls(c.n_vfs, c.layout.msix_vectors, fault_depth=c.irq_fault_depth),
          lambda c: {"n_vfs": c.n_vfs, "n_vectors": c.layout.msix_vectors,
                     "fault_depth": c.irq_fault_depth}),
    Block("link", "hdl.link", "LinkPort", lambda cls, c: cls.for_system(c),
          lambda c: vars(c.link)),
    Block("io_tunnel_host", "hdl.io_tunnel", "IoTunnelHost", lambda cls, c: cls.for_system(c),
          lambda c: {"n_vfs": c.n_vfs, "tag_bits": c.tag_bits}),
    Block("io_tunnel_device", "hdl.io_tunnel", "IoTunnelDevice",
          lambda cls, c: cls.for_system(c), lambda c: {"n_vfs": c.n_vfs, "tag_bits": c.tag_bits}),
    Block("profiler", "hdl.profiler", "Profiler", lambda cls, c: cls.for_system(c),
          lambda c: {"n_vfs": c.n_vfs, "tag_bits": c.tag_bits, "n_bins": c.profiler_bins,
                     "counter_bits": c.profiler_counter_bits,
                     "latency_bits": c.profiler_latency_bits,
                     "words_bits": c.profiler_words_bits}),
    Block("migproto_decoder", "hdl.migproto", "MigProtoDecoder",
          lambda cls, c: cls(c.n_vfs, max(c.chunk_words, c.layout.block_words,
                                          c.layout.meta_words)),
          lambda c: {"n_vfs": c.n_vfs}),
    Block("migproto_encoder", "hdl.migproto", "MigProtoEncoder", lambda cls, c: cls(),
          lambda c: {}),
    Block("csr", "hdl.csr", "AxiLiteSlave", lambda cls, c: cls(), lambda c: {}),
    Block("mig_engine", "hdl.mig_engine", "MigEngine",
          lambda cls, c: cls(c, Device.HOST),
          lambda c: {"config": c.to_dict(), "device": Device.HOST.label}),
    Block("system", "hdl.system", "System",
          lambda cls, c: cls(c),
          lambda c: {"config": c.to_dict()}),
)


def write_verilog(component, name: str, out_dir: Path, parameters: dict | None = None) -> Path:
    """Write ``<out_dir>/<name>.v`` and ``<name>.json`` (ports, parameters, clock/reset)."""
    from amaranth.back import verilog
    from amaranth.hdl import Value

    out_dir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, emit_src=False)
    path = out_dir / f"{name}.v"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    ports = []
    for port_name, flow, value in component.signature.flatten(component):
        ports.append({"name": "__".join(map(str, port_name)), "direction": flow.flow.value,
                      "width": len(Value.cast(value))})
    sidecar = {"top": name, "clock": "clk", "reset": "rst",
               "reset_style": "synchronous, active-high",
               "parameters": parameters or {}, "ports": ports}
    (out_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def generate(out_dir: Path, names: list[str] | None = None,
             config: SystemConfig | None = None) -> list[Path]:
    """Write the Verilog of the named blocks (all by default); returns the files written."""
    config = config or SystemConfig()
    known = {b.name: b for b in BLOCKS}
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ValueError(f"unknown block(s) {', '.join(unknown)}: choose from "
                         f"{', '.join(known)}")
    written = []
    for block in (known[n] for n in names) if names else BLOCKS:
        try:
            module = importlib.import_module(block.module)
        except ModuleNotFoundError as exc:
            if exc.name != block.module:
                raise
            print(f"warning: skipping {block.name}: {block.module} does not exist yet",
                  file=sys.stderr)
            continue
        component = block.build(getattr(module, block.cls), config)
        path = write_verilog(component, block.name, out_dir, block.parameters(config))
        print(f"wrote {path}")
        written.append(path)
    return written


def config_name(spec: str) -> str:
    """The folder a ``--config`` system goes to: the preset's name or the file's stem."""
    return Path(spec).stem


def _generate_system(out_dir: Path, spec: str) -> int:
    """``--config SPEC``: the system top alone; a bad SPEC is one line and exit code 2."""
    try:
        config = load_config(spec)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    generate(out_dir / config_name(spec), ["system"], config)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blocks", nargs="*", help="blocks to generate (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--config", metavar="SPEC",
                        help="only the system top, for a preset name or a JSON file of "
                             "SystemConfig fields, into OUT/<name>/system.v")
    args = parser.parse_args(argv)
    if args.config is not None:
        if args.blocks:
            parser.error("--config writes the system top only: name no blocks")
        return _generate_system(args.out, args.config)
    try:
        generate(args.out, args.blocks)
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
