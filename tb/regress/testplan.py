"""The testplans: one hjson file per block and one for the system under ``testplans/``.

Each file has ``name``, ``tests`` ({test name: {node, randomised, timeout, nightly_only}}:
the pytest entry a regression runs; ``nightly_only`` leaves it out of the smoke suite),
``testpoints`` (name, goal, stimulus, checks, tests) and ``covergroups`` (name, bins,
optional ``unreachable``: {bin: reason}).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import hjson

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "testplans"


class PlanError(ValueError):
    """A testplan that cannot be used: the message names the file and the problem."""


@dataclass(frozen=True)
class Test:
    name: str
    node: str          # pytest node id, e.g. tb/link/test_link.py::test_link
    randomised: bool
    timeout: float     # seconds before the run is killed and recorded as an error
    plan: str
    nightly_only: bool = False   # too long for smoke's bound (smoke runs a sample of it)


@dataclass(frozen=True)
class Covergroup:
    name: str
    bins: tuple[str, ...]
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def planned(self) -> tuple[str, ...]:
        """The bins a regression must hit (the unreachable ones, with a reason, excluded)."""
        return tuple(b for b in self.bins if b not in self.unreachable)


@dataclass
class Testplan:
    name: str
    path: Path
    tests: dict[str, Test]
    testpoints: list[dict]
    covergroups: list[Covergroup]


def load(path: Path) -> Testplan:
    try:
        raw = hjson.loads(path.read_text())
    except (OSError, hjson.HjsonDecodeError) as exc:
        raise PlanError(f"{path}: {exc}") from exc
    for key in ("name", "tests", "testpoints", "covergroups"):
        if key not in raw:
            raise PlanError(f"{path}: no '{key}'")
    tests = {name: Test(name, t["node"], bool(t.get("randomised", False)),
                        float(t.get("timeout", 3600)), raw["name"],
                        bool(t.get("nightly_only", False)))
             for name, t in raw["tests"].items()}
    groups = [Covergroup(g["name"], tuple(g["bins"]), dict(g.get("unreachable", {})))
              for g in raw["covergroups"]]
    return Testplan(raw["name"], path, tests, list(raw["testpoints"]), groups)


def load_all(folder: Path = PLANS) -> list[Testplan]:
    plans = [load(p) for p in sorted(folder.glob("*.hjson"))]
    if not plans:
        raise PlanError(f"no testplans (*.hjson) in {folder}")
    return plans


def all_tests(plans: list[Testplan]) -> dict[str, Test]:
    tests: dict[str, Test] = {}
    for plan in plans:
        for name, test in plan.tests.items():
            if name in tests:
                raise PlanError(f"{plan.path}: test {name!r} also in testplan {tests[name].plan}")
            tests[name] = test
    return tests


def node_exists(node: str, root: Path = ROOT) -> bool:
    """Whether the pytest node ``file::function`` names a test function in that file."""
    file, _, func = node.partition("::")
    path = root / file
    if not path.is_file() or not func:
        return False
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == func for n in tree.body)


def code_covergroups() -> dict[str, tuple[str, ...]]:
    """The covergroups the benches' code samples, {name: bins}: the testplans must agree."""
    from tb.link.test_link import LinkCoverage
    from tb.router.test_router import RouterCoverage
    from tb.system.coverage import groups

    out = {cls.COVERGROUP: tuple(cls.PLANNED) for cls in (LinkCoverage, RouterCoverage)}
    out.update({name: g.bins for name, g in groups().items()})
    return out


def problems(plans: list[Testplan], root: Path = ROOT) -> list[str]:
    """Everything wrong with the testplans, one line each (empty: consistent)."""
    out: list[str] = []
    code = code_covergroups()
    try:
        tests = all_tests(plans)
    except PlanError as exc:
        return [str(exc)]
    for plan in plans:
        where = plan.path.name
        for test in plan.tests.values():
            if not node_exists(test.node, root):
                out.append(f"{where}: test {test.name!r} runs {test.node}, which does not exist")
        for tp in plan.testpoints:
            for key in ("name", "goal", "stimulus", "checks", "tests"):
                if not tp.get(key):
                    out.append(f"{where}: testpoint {tp.get('name')!r} has no {key}")
            out += [f"{where}: testpoint {tp.get('name')!r} names unknown test {t!r}"
                    for t in tp.get("tests", []) if t not in tests]
        for group in plan.covergroups:
            sampled = code.get(group.name)
            if sampled is None:
                out.append(f"{where}: covergroup {group.name!r} is sampled by no code")
                continue
            out += [f"{where}: bin {b!r} of {group.name} is sampled by no code"
                    for b in group.bins if b not in sampled]
            out += [f"{where}: unreachable bin {b!r} of {group.name} gives no reason"
                    for b, why in group.unreachable.items() if not str(why).strip()]
    return out
