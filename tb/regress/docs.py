"""Render the testplans as docs/testplan.md (`make docs`)."""

from __future__ import annotations

from tb.regress.testplan import ROOT, Testplan, load_all


def markdown(plans: list[Testplan]) -> str:
    out = ["# Testplans", "", "Generated from `testplans/*.hjson` by `make docs` "
           "(`python -m tb.regress.docs`); edit the hjson, not this file.", ""]
    for plan in plans:
        out += [f"## {plan.name}", "", "| test | pytest node | seeds |", "|---|---|---|"]
        out += [f"| {t.name} | `{t.node}` | {'random' if t.randomised else 'fixed'} |"
                for t in plan.tests.values()]
        out += ["", "| testpoint | goal | stimulus | checks | tests |", "|---|---|---|---|---|"]
        out += [f"| {tp['name']} | {tp['goal']} | {tp['stimulus']} | {tp['checks']} | "
                f"{', '.join(tp['tests'])} |" for tp in plan.testpoints]
        for g in plan.covergroups:
            out += ["", f"Covergroup `{g.name}` ({len(g.planned)} planned bins): "
                    + ", ".join(f"`{b}`" for b in g.planned)]
            out += [f"- unreachable `{b}`: {why}" for b, why in g.unreachable.items()]
        out.append("")
    return "\n".join(out)


def main() -> None:
    path = ROOT / "docs" / "testplan.md"
    path.write_text(markdown(load_all()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
