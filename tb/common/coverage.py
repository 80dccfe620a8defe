"""Functional coverage on cocotb-coverage (docs/coverage.md says why this library).

A ``Covergroup`` is one cocotb-coverage ``CoverPoint`` over named bins (a cross is flattened
into ``"a x b"`` bin names, so every bin is a string the testplan can name). ``sample``
counts a hit and refuses a bin the group does not plan, so a typo cannot hide a hole.
``flush()`` writes every group of this process to ``$VFMIG_COVERAGE_DIR/cov-<pid>.json``
(``build/coverage`` outside a regression), ``{group: {bin: hits}}``; a regression merges
the files of all its runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cocotb_coverage.coverage import CoverPoint, coverage_db

ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = "VFMIG_COVERAGE_DIR"
PREFIX = "vfmig."
_GROUPS: dict[str, Covergroup] = {}


class Covergroup:
    """Named string bins counted in the cocotb-coverage database (``coverage_db``)."""

    def __init__(self, name: str, bins: Sequence[str]):
        if not bins or len(set(bins)) != len(bins):
            raise ValueError(f"covergroup {name!r} needs distinct bin names, got {list(bins)}")
        self.name, self.bins = name, tuple(bins)

        @CoverPoint(PREFIX + name, vname="bin", bins=list(self.bins))
        def _sample(bin: str) -> None:  # noqa: A002 - cocotb-coverage samples by arg name
            pass

        self._sample = _sample

    def sample(self, bin: str, hit: bool | int = True) -> None:  # noqa: A002
        """One hit of ``bin`` when ``hit`` is true (an int samples that many times)."""
        if bin not in self.bins:
            raise ValueError(f"covergroup {self.name!r} has no bin {bin!r}; bins: "
                             f"{', '.join(self.bins)}")
        for _ in range(int(hit)):
            self._sample(bin)

    def hits(self) -> dict[str, int]:
        return dict(coverage_db[PREFIX + self.name].detailed_coverage)


def covergroup(name: str, bins: Sequence[str]) -> Covergroup:
    """The process-wide group ``name`` (created on first use; same bins every time)."""
    group = _GROUPS.get(name)
    if group is None:
        group = _GROUPS[name] = Covergroup(name, bins)
    elif group.bins != tuple(bins):
        raise ValueError(f"covergroup {name!r} redefined with other bins")
    return group


def cross(*axes: Iterable[str]) -> list[str]:
    """The bin names of a cross: every combination joined by ``" x "``."""
    out = [""]
    for axis in axes:
        out = [f"{a} x {b}" if a else str(b) for a in out for b in axis]
    return out


def snapshot() -> dict[str, dict[str, int]]:
    return {name: group.hits() for name, group in sorted(_GROUPS.items())}


def flush() -> Path:
    """Write this process's coverage (all groups so far); returns the file written."""
    out = Path(os.environ.get(ENV_DIR) or ROOT / "build" / "coverage")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cov-{os.getpid()}.json"
    path.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    return path


def merge_hits(docs: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum ``{group: {bin: hits}}`` documents."""
    merged: dict[str, dict[str, int]] = {}
    for doc in docs:
        for group, bins in doc.items():
            into = merged.setdefault(group, {})
            for bin_, hits in bins.items():
                into[bin_] = into.get(bin_, 0) + hits
    return merged


def merge(files: Iterable[Path]) -> dict[str, dict[str, int]]:
    """Sum the hits of coverage files written by ``flush``."""
    return merge_hits(json.loads(Path(path).read_text()) for path in files)
