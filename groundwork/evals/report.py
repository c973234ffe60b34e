"""Reports of a run or a comparison: JSON, and one self-contained HTML page with inline SVG charts.

The HTML page loads nothing (no script, no stylesheet, no font from a CDN): it opens offline, can be
attached to a ticket, and shows every case with its output, checks and metrics.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Sequence
from typing import Any

from groundwork.evals.compare import Comparison
from groundwork.evals.results import CaseResult, SuiteRun

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2733;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border-bottom:1px solid #dde3ea;
padding:.35rem .5rem;text-align:left;vertical-align:top}th{background:#f3f6f9}
.pass{color:#17803d;font-weight:600}.fail{color:#c62828;font-weight:600}.muted{color:#6b7785}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #dde3ea;border-radius:8px;
padding:.6rem 1rem;min-width:130px}.card b{display:block;font-size:1.3rem}
details{margin:.2rem 0}
pre{white-space:pre-wrap;background:#f7f9fb;padding:.5rem;border-radius:6px;margin:.3rem 0}
"""


def report_json(run: SuiteRun, comparison: Comparison | None = None, other: SuiteRun | None = None) -> str:
    """The run (and a comparison with its second run) as indented JSON."""
    body: dict[str, Any] = {"run": run.to_dict()}
    if comparison is not None and other is not None:
        body = {"a": run.to_dict(), "b": other.to_dict(), "comparison": comparison.to_dict()}
    return json.dumps(body, indent=2, ensure_ascii=False)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _bars(
    labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[float]]], height: int = 180
) -> str:
    """A grouped bar chart of values in 0..1: one group per label, one bar per series."""
    group_w = max(24, 10 + 14 * len(series))
    width = 40 + group_w * len(labels)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 70}" role="img">']
    for tick in (0, 0.5, 1):
        y = 10 + height * (1 - tick)
        out.append(f'<line x1="34" x2="{width}" y1="{y}" y2="{y}" stroke="#dde3ea"/>')
        out.append(f'<text x="0" y="{y + 4}" font-size="10">{tick:.1f}</text>')
    for i, label in enumerate(labels):
        x0 = 40 + i * group_w
        for j, (name, color, values) in enumerate(series):
            v = max(0.0, min(1.0, values[i]))
            h = height * v
            out.append(
                f'<rect x="{x0 + 4 + 14 * j}" y="{10 + height - h:.1f}" width="12" height="{h:.1f}" '
                f'fill="{color}"><title>{_e(label)} {_e(name)}: {values[i]:.3f}</title></rect>'
            )
        out.append(
            f'<text x="{x0 + 6}" y="{height + 20}" font-size="10" '
            f'transform="rotate(45 {x0 + 6} {height + 20})">{_e(label[:18])}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _interval(comparison: Comparison, width: int = 520) -> str:
    """The mean difference B - A with its interval, on an axis from -1 to 1."""

    def x(v: float) -> float:
        return 20 + (v + 1) / 2 * (width - 40)

    c = comparison
    color = {"better": "#17803d", "worse": "#c62828", "no_difference": "#5f6b7a"}[c.verdict]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="70" role="img">'
        f'<line x1="20" x2="{width - 20}" y1="35" y2="35" stroke="#9aa5b1"/>'
        f'<line x1="{x(0)}" x2="{x(0)}" y1="15" y2="55" stroke="#1d2733" stroke-dasharray="3"/>'
        f'<text x="{x(-1) - 8}" y="62" font-size="10">-1</text><text x="{x(0) - 3}" y="68" font-size="10">0'
        f'</text><text x="{x(1) - 6}" y="62" font-size="10">+1</text>'
        f'<line x1="{x(c.ci_low):.1f}" x2="{x(c.ci_high):.1f}" y1="35" y2="35" stroke="{color}" '
        f'stroke-width="6"/><circle cx="{x(c.mean_diff):.1f}" cy="35" r="6" fill="{color}">'
        f"<title>mean difference {c.mean_diff:+.3f}, CI {c.ci_low:+.3f} to {c.ci_high:+.3f}</title>"
        "</circle></svg>"
    )


def _cards(run: SuiteRun) -> str:
    items = [
        (
            "verdict",
            f'<span class="{"pass" if run.passed else "fail"}">{"PASS" if run.passed else "FAIL"}</span>',
        ),
        ("pass rate", f"{run.pass_rate:.0%}"),
        ("mean score", f"{run.mean_score:.3f}"),
        ("broken cases", str(run.broken)),
        ("seconds", f"{run.seconds:.1f}"),
        *((name, f"{value:.3f}") for name, value in sorted(run.metric_means().items())),
    ]
    return (
        '<div class="cards">' + "".join(f'<div class="card">{k}<b>{v}</b></div>' for k, v in items) + "</div>"
    )


def _case_rows(cases: Sequence[CaseResult]) -> str:
    rows = []
    for c in cases:
        status = '<span class="pass">pass</span>' if c.passed else '<span class="fail">fail</span>'
        checks = "".join(
            f'<div class="{"pass" if a.passed else "fail"}">{_e(a.type)}'
            f' <span class="muted">{_e(a.detail)}</span></div>'
            for a in c.assertions
        )
        if c.error:
            checks += f'<div class="fail">error: {_e(c.error)}</div>'
        metrics = " ".join(f"{k}={v:.2f}" for k, v in c.metrics.items() if v is not None)
        output = c.output.text if c.output else ""
        extra = f"<pre>{_e(c.output.draft)}</pre>" if c.output and c.output.draft else ""
        rows.append(
            f"<tr><td>{_e(c.case_id)}<br>{status} {c.score:.2f}</td><td>{_e(c.input)}</td>"
            f"<td><pre>{_e(output)}</pre>"
            + (f"<details><summary>model draft</summary>{extra}</details>" if extra else "")
            + f"</td><td>{checks}<div class='muted'>{_e(metrics)}</div></td></tr>"
        )
    return (
        "<table><tr><th>case</th><th>input</th><th>output</th><th>checks and metrics</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _run_section(title: str, run: SuiteRun) -> str:
    failures = "".join(f'<li class="fail">{_e(f)}</li>' for f in run.failures)
    chart = _bars([c.case_id for c in run.cases], [("score", "#3b6fb6", [c.score for c in run.cases])])
    return (
        f"<h2>{_e(title)}: {_e(run.target)}</h2>{_cards(run)}"
        + (f"<ul>{failures}</ul>" if failures else "")
        + f"<h3>Score per case</h3>{chart}{_case_rows(run.cases)}"
    )


def _sign_class(value: float) -> str:
    return "pass" if value > 0 else "fail" if value < 0 else "muted"


def report_html(run: SuiteRun, comparison: Comparison | None = None, other: SuiteRun | None = None) -> str:
    """One self-contained HTML page: the run, or both runs of a comparison and its verdict."""
    title = f"Evaluation: {run.suite}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"]
    parts.append(f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>")
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    parts.append(f'<p class="muted">{len(run.cases)} cases; report written {made} by groundwork eval.</p>')
    if comparison is not None and other is not None:
        c = comparison
        ids = [d.case_id for d in c.cases]
        parts.append(f"<h2>Comparison: B = {_e(c.b)} against A = {_e(c.a)}</h2>")
        parts.append(f"<p><b>{_e(c.summary())}</b></p>{_interval(c)}")
        parts.append(
            _bars(
                ids,
                [
                    ("A", "#9aa5b1", [d.score_a for d in c.cases]),
                    ("B", "#3b6fb6", [d.score_b for d in c.cases]),
                ],
            )
        )
        rows = "".join(
            f"<tr><td>{_e(d.case_id)}</td><td>{d.score_a:.2f}</td><td>{d.score_b:.2f}</td>"
            f'<td class="{_sign_class(d.diff)}">{d.diff:+.2f}</td></tr>'
            for d in c.cases
        )
        parts.append(f"<table><tr><th>case</th><th>A</th><th>B</th><th>B - A</th></tr>{rows}</table>")
        parts.append(_run_section("A", run) + _run_section("B", other))
    else:
        parts.append(_run_section("Run", run))
    parts.append("</body></html>")
    return "".join(parts)
