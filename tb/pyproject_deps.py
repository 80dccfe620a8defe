"""Print the pinned requirements of pyproject.toml, one per line, for ``pip install -r``.

pyproject.toml is the single place versions are pinned; the Makefile installs from this
list so the project need not be built as a package.  Usage:
``python tb/pyproject_deps.py [--extra dev] [pyproject.toml]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def _array(text: str, start: int) -> list[str]:
    """The string items of the TOML array opening at ``text[start] == '['``."""
    items, i = [], start + 1
    while text[i] != "]":
        if text[i] == "#":
            i = text.index("\n", i)
        elif text[i] in "\"'":
            end = text.index(text[i], i + 1)
            items.append(text[i + 1:end])
            i = end
        i += 1
    return items


def _load(text: str) -> dict:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # Python 3.10: read just the arrays this script needs
        project: dict = {"optional-dependencies": {}}
        section = ""
        for match in re.finditer(r"^\[([^\]]+)\]|^([\w-]+)\s*=\s*\[", text, re.M):
            if match[1]:
                section = match[1].strip()
            elif section == "project" and match[2] == "dependencies":
                project["dependencies"] = _array(text, match.end() - 1)
            elif section == "project.optional-dependencies":
                project["optional-dependencies"][match[2]] = _array(text, match.end() - 1)
        return {"project": project}
    return tomllib.loads(text)


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = _load(pyproject.read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        try:
            reqs += project["optional-dependencies"][extra]
        except KeyError:
            raise SystemExit(f"error: {pyproject} has no optional dependency group "
                             f"{extra!r}") from None
    return reqs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", nargs="?", type=Path,
                        default=Path(__file__).resolve().parents[1] / "pyproject.toml")
    parser.add_argument("--extra", action="append", default=[],
                        help="also list this optional-dependency group (repeatable)")
    args = parser.parse_args(argv)
    sys.stdout.write("".join(f"{r}\n" for r in requirements(args.pyproject, args.extra)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
