"""What a regression writes to build/regress/: junit.xml, coverage.json, summary.json and
a static report.html (inline SVG, no script, opens from disk)."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from tb.common.coverage import merge_hits
from tb.regress.testplan import Covergroup


def merge_runs(results: list[dict]) -> dict[str, dict[str, int]]:
    return merge_hits(r["coverage"] for r in results)


def coverage_table(groups: list[Covergroup], merged: dict[str, dict[str, int]]) -> dict:
    """Per covergroup: bins with hits, percentage over the planned (reachable) bins,
    missed bins named; plus the totals."""
    out: dict = {"covergroups": {}}
    total = hit = 0
    for g in groups:
        hits = {b: merged.get(g.name, {}).get(b, 0) for b in g.bins}
        planned = g.planned
        n_hit = sum(1 for b in planned if hits[b])
        total, hit = total + len(planned), hit + n_hit
        out["covergroups"][g.name] = {
            "bins": hits, "planned": len(planned), "hit": n_hit,
            "percent": round(100 * n_hit / len(planned), 1) if planned else 100.0,
            "missed": [b for b in planned if not hits[b]], "unreachable": g.unreachable}
    out.update(bins_total=total, bins_hit=hit,
               percent=round(100 * hit / total, 1) if total else 100.0)
    return out


def coverage_vs_seeds(groups: list[Covergroup], results: list[dict]) -> list[tuple[int, float]]:
    """Coverage after the runs of the first k seeds of every test, k = 1, 2, ..."""
    depth = max((r["index"] for r in results), default=0) + 1
    return [(k, coverage_table(groups, merge_runs([r for r in results if r["index"] < k]))
             ["percent"]) for k in range(1, depth + 1)]


def write_junit(path: Path, suite: str, results: list[dict]) -> None:
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=f"regress.{suite}", tests=str(len(results)),
                       failures=str(sum(r["status"] == "failed" for r in results)),
                       errors=str(sum(r["status"] == "error" for r in results)),
                       time=str(sum(r["seconds"] for r in results)))
    for r in sorted(results, key=lambda r: r["run_id"]):
        case = ET.SubElement(ts, "testcase", classname=f"{suite}.{r['test']}",
                             name=r["run_id"], time=str(r["seconds"]))
        props = ET.SubElement(case, "properties")
        for key in ("seed", "sim", "node", "log", "rerun"):
            ET.SubElement(props, "property", name=key,
                          value="default" if r[key] is None else str(r[key]))
        if r["status"] != "passed":
            tag = "failure" if r["status"] == "failed" else "error"
            ET.SubElement(case, tag, message=r["message"]).text = (
                f"log: {r['log']}\nrerun: {r['rerun']}")
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _svg_plot(points: list[tuple[int, float]]) -> str:
    w, h, pad = 420, 220, 40
    xmax = max(len(points), 2)
    def xy(k: int, p: float) -> tuple[float, float]:
        return (pad + (k - 1) * (w - 2 * pad) / (xmax - 1), h - pad - p * (h - 2 * pad) / 100)
    line = " ".join("{:.1f},{:.1f}".format(*xy(k, p)) for k, p in points)
    dots = "".join('<circle cx="{:.1f}" cy="{:.1f}" r="3"/>'.format(*xy(k, p)) for k, p in points)
    labels = "".join(f'<text x="{xy(k, 0)[0]:.1f}" y="{h - pad + 15}">{k}</text>'
                     for k, _ in points)
    return (f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" '
            f'font-size="11"><rect width="{w}" height="{h}" fill="#fff" stroke="#ccc"/>'
            f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#000"/>'
            f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#000"/>'
            f'<text x="5" y="{pad}">100%</text><text x="5" y="{h - pad}">0%</text>'
            f'<text x="{w / 2 - 40}" y="{h - 5}">seeds per test</text>{labels}'
            f'<polyline points="{line}" fill="none" stroke="#36c" stroke-width="2"/>'
            f'{dots}</svg>')


def write_html(path: Path, summary: dict, results: list[dict], cov: dict,
               points: list[tuple[int, float]]) -> None:
    e = html.escape
    rows = "".join(
        f'<tr class="{r["status"]}"><td>{e(r["test"])}</td><td>{r["seed"] or "default"}</td>'
        f'<td>{r["sim"]}</td><td>{r["status"]}</td><td>{r["seconds"]}</td>'
        f'<td>{e(r["message"])}</td></tr>' for r in sorted(results, key=lambda r: r["run_id"]))
    groups = "".join(
        f'<tr><td>{e(name)}</td><td>{g["hit"]}/{g["planned"]}</td><td>{g["percent"]}%</td>'
        f'<td>{e(", ".join(g["missed"]))}</td><td>{e(", ".join(g["unreachable"]))}</td></tr>'
        for name, g in cov["covergroups"].items())
    fails = "".join(f'<li><b>{e(r["run_id"])}</b>: {e(r["message"])}<br>log: '
                    f'<code>{e(r["log"])}</code><br>rerun: <code>{e(r["rerun"])}</code></li>'
                    for r in results if r["status"] != "passed") or "<li>none</li>"
    head = ", ".join(f"{k}: {e(str(v))}" for k, v in summary.items())
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>vfmig regression "
        f"{e(summary['suite'])}</title><style>body{{font-family:sans-serif}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        ".failed,.error{background:#fdd}.passed{background:#dfd}</style></head><body>"
        f"<h1>vfmig regression: {e(summary['suite'])}</h1><p>{head}</p>"
        f"<h2>Failures and their rerun commands</h2><ul>{fails}</ul>"
        "<h2>Runs</h2><table><tr><th>test</th><th>seed</th><th>sim</th><th>status</th>"
        f"<th>seconds</th><th>message</th></tr>{rows}</table>"
        "<h2>Coverage per covergroup</h2><table><tr><th>covergroup</th><th>bins hit</th>"
        f"<th>%</th><th>missed bins</th><th>unreachable (testplan)</th></tr>{groups}</table>"
        f"<h2>Coverage against seeds run</h2>{_svg_plot(points)}</body></html>\n")


def write_all(out: Path, summary: dict, results: list[dict], groups: list[Covergroup]) -> dict:
    merged = merge_runs(results)
    cov = coverage_table(groups, merged)
    summary.update(coverage_percent=cov["percent"], bins_total=cov["bins_total"],
                   bins_hit=cov["bins_hit"])
    write_junit(out / "junit.xml", summary["suite"], results)
    (out / "coverage.json").write_text(json.dumps(cov, indent=1) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_html(out / "report.html", summary, results, cov, coverage_vs_seeds(groups, results))
    return cov
