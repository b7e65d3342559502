"""Self-contained HTML view of a DriftReport.

One file with inline CSS and inline SVG, no scripts, fonts or anything fetched: it is stored
as a run artefact and opened later, possibly offline or behind a strict CSP. Hover text uses
SVG <title> elements, which browsers show without JavaScript.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from mlops_assets.lib.drift import Distribution, DriftReport, FeatureDrift

_COLOURS = {"reference": "#4e79a7", "current": "#f28e2b"}
_VERDICT_STYLE = {
    "drift": ("#b42318", "#fee4e2", "drift"),
    "possible_drift": ("#b54708", "#fef0c7", "possible drift"),
    "no_drift": ("#067647", "#dcfae6", "no drift"),
    "no_verdict": ("#475467", "#eaecf0", "no verdict"),
}
_MAX_CATEGORIES = 12
_CHART_WIDTH = 640

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
  margin:24px;color:#101828;background:#fff;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px}
h3{font-size:15px;margin:0 0 6px}
.muted{color:#475467;font-size:13px}
.badge{display:inline-block;white-space:nowrap;padding:2px 10px;border-radius:12px;
  font-weight:600;font-size:13px}
.summary{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.summary div{border:1px solid #eaecf0;border-radius:8px;padding:8px 12px;min-width:120px}
.summary b{display:block;font-size:18px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border-bottom:1px solid #eaecf0;padding:5px 8px;text-align:right;vertical-align:top}
th{background:#f9fafb;position:sticky;top:0}
td.l,th.l{text-align:left}
.feature{border:1px solid #eaecf0;border-radius:8px;padding:12px;margin:12px 0}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;border-radius:2px}
svg text{font-size:11px;fill:#475467;font-family:inherit}
"""


def render_html(report: DriftReport, *, title: str) -> str:
    """The report as one HTML page: verdict, feature table, and a chart per feature (drawn
    from the report's distributions, not from the rows)."""
    ordered = report.top_drifting(len(report.features))
    anchors = {f.feature: f"feature-{i}" for i, f in enumerate(ordered)}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _summary(report),
        "<h2>Features</h2>",
        _table(ordered, anchors),
        "<h2>Distributions</h2>",
        '<p class="legend muted">'
        f'<span style="background:{_COLOURS["reference"]}"></span>reference'
        f'<span style="background:{_COLOURS["current"]}"></span>current '
        "(share of each sample's usable values)</p>",
    ]
    for feat in ordered:
        distribution = report.distributions.get(feat.feature)
        parts.append(_feature_section(feat, distribution, anchors[feat.feature]))
    parts.append("</body></html>")
    return "\n".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _badge(verdict: str) -> str:
    fg, bg, label = _VERDICT_STYLE[verdict]
    return f'<span class="badge" style="color:{fg};background:{bg}">{_e(label)}</span>'


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    if value is None:
        return "–"
    if 0 < value < 0.001:
        return "<0.1%"
    return f"{100 * value:.1f}%"


def _summary(report: DriftReport) -> str:
    cfg = report.config
    share = "–" if report.share_drifted is None else f"{100 * report.share_drifted:.0f}%"
    counts = {v: sum(f.verdict == v for f in report.features) for v in _VERDICT_STYLE}
    rows = [
        f"<div>Dataset verdict<b>{_badge(report.verdict)}</b></div>",
        f"<div>Features drifted<b>{counts['drift']} of {len(report.features)}</b></div>",
        f"<div>Possible drift<b>{counts['possible_drift']}</b></div>",
        f"<div>Share drifted<b>{share}</b></div>",
        f"<div>Reference rows<b>{report.n_reference:,}</b></div>",
        f"<div>Current rows<b>{report.n_current:,}</b></div>",
    ]
    notes = [
        f"Engine {_e(report.engine)}; {_e(report.correction)} correction across features at "
        f"{cfg.p_value:g}. Drift needs significance and an effect size at or above the drift "
        f"threshold (PSI {cfg.psi_drift:g}, Wasserstein/sd {cfg.wasserstein_drift:g}, "
        f"JS distance {cfg.js_drift:g}); possible drift, at or above "
        f"{cfg.psi_possible:g} / {cfg.wasserstein_possible:g} / {cfg.js_possible:g}. "
        f"The dataset drifts when at least {100 * cfg.drift_share:g}% of features with a "
        "verdict drift."
    ]
    if report.ignored_columns:
        notes.append("Columns not compared: " + ", ".join(_e(c) for c in report.ignored_columns))
    if report.verdict == "no_verdict":
        reasons = sorted({f.reason for f in report.features if f.reason})
        notes.append("No verdict: " + "; ".join(_e(r) for r in reasons))
    paragraphs = "".join(f'<p class="muted">{n}</p>' for n in notes)
    return f'<div class="summary">{"".join(rows)}</div>{paragraphs}'


def _table(features: list[FeatureDrift], anchors: dict[str, str]) -> str:
    head = (
        '<tr><th class="l">Feature</th><th class="l">Kind</th><th>Test</th><th>Statistic</th>'
        "<th>p</th><th>p adjusted</th><th>PSI</th><th>Wasserstein/sd</th><th>JS distance</th>"
        '<th class="l">Verdict</th><th>Rows ref / cur</th><th>Missing ref / cur</th>'
        '<th class="l">Notes</th></tr>'
    )
    body = []
    for f in features:
        notes = [f.reason] if f.reason else []
        notes += list(f.notes)
        if f.unseen_categories:
            notes.append("unseen: " + ", ".join(f.unseen_categories[:10]))
        if f.share_outside_reference_range:
            notes.append(f"{_pct(f.share_outside_reference_range)} outside reference range")
        if f.non_finite_current:
            notes.append(f"{f.non_finite_current:,} current values excluded")
        body.append(
            f'<tr><td class="l"><a href="#{anchors[f.feature]}">{_e(f.feature)}</a></td>'
            f'<td class="l">{_e(f.kind)}</td><td>{_e(f.test)}</td>'
            f"<td>{_num(f.statistic)}</td><td>{_num(f.p_value)}</td>"
            f"<td>{_num(f.p_value_adjusted)}</td><td>{_num(f.psi)}</td>"
            f"<td>{_num(f.wasserstein_norm)}</td><td>{_num(f.js_distance)}</td>"
            f'<td class="l">{_badge(f.verdict)}</td>'
            f"<td>{f.n_reference:,} / {f.n_current:,}</td>"
            f"<td>{_pct(f.missing_rate_reference)} / {_pct(f.missing_rate_current)}</td>"
            f'<td class="l">{"<br>".join(_e(n) for n in notes)}</td></tr>'
        )
    return f"<table>{head}{''.join(body)}</table>"


def _feature_section(feat: FeatureDrift, distribution: Distribution | None, anchor: str) -> str:
    if distribution is None:
        chart = _no_data("no usable values to plot")
    elif distribution.kind == "categories":
        chart = _categorical_chart(distribution)
    else:
        chart = _numeric_chart(distribution)
    effect = (
        f"PSI {_num(feat.psi)}, Wasserstein/sd {_num(feat.wasserstein_norm)}"
        if feat.kind == "numeric"
        else f"JS distance {_num(feat.js_distance)}"
    )
    detail = feat.reason or f"{feat.test} p adjusted {_num(feat.p_value_adjusted)}; {effect}"
    return (
        f'<div class="feature" id="{anchor}">'
        f"<h3>{_e(feat.feature)} {_badge(feat.verdict)}</h3>"
        f'<p class="muted">{_e(detail)}</p>{chart}</div>'
    )


def _no_data(message: str) -> str:
    return f'<p class="muted">{_e(message)}</p>'


def _shares(counts: tuple[int, ...]) -> np.ndarray:
    return np.asarray(counts, dtype=np.float64) / max(sum(counts), 1)


def _numeric_chart(distribution: Distribution) -> str:
    ref, cur = _shares(distribution.reference), _shares(distribution.current)
    points = distribution.points
    if distribution.kind == "values":
        # Counts, codes, flags: one bar per value reads better than bins with gaps.
        return _vertical_bars([_short(v) for v in points], ref, cur, ticks=None)
    bins = len(points) - 1
    labels = [f"{_short(points[i])} – {_short(points[i + 1])}" for i in range(bins)]
    labels[0] = f"≤ {_short(points[1])}"
    labels[-1] = f"> {_short(points[-2])}"
    return _vertical_bars(labels, ref, cur, ticks=(_short(points[0]), _short(points[-1])))


def _short(x: float) -> str:
    return f"{x:.3g}"


def _vertical_bars(
    labels: list[str], ref: np.ndarray, cur: np.ndarray, ticks: tuple[str, str] | None
) -> str:
    width, height, pad_l, pad_b, pad_t = _CHART_WIDTH, 190, 44, 22, 8
    plot_w, plot_h = width - pad_l - 8, height - pad_b - pad_t
    top = max(float(ref.max(initial=0)), float(cur.max(initial=0)), 1e-12)
    # A handful of distinct values would otherwise give bars as wide as the chart.
    slot = min(plot_w / len(labels), 48.0)
    bar = slot * 0.42
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for frac in (0.0, 0.5, 1.0):
        y = pad_t + plot_h * (1 - frac)
        out.append(
            f'<line x1="{pad_l}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eaecf0"/>'
            f'<text x="{pad_l - 4}" y="{y + 4:.1f}" text-anchor="end">{100 * top * frac:.0f}%'
            "</text>"
        )
    for i, label in enumerate(labels):
        x0 = pad_l + i * slot + slot * 0.08
        for k, (name, share) in enumerate((("reference", ref[i]), ("current", cur[i]))):
            h = plot_h * float(share) / top
            out.append(
                f'<rect x="{x0 + k * bar:.1f}" y="{pad_t + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{_COLOURS[name]}"><title>{_e(label)}: {name} '
                f"{100 * float(share):.2f}%</title></rect>"
            )
    if ticks is not None:
        # Binned: the range's ends sit at the outer edges of the first and last bins.
        right = pad_l + len(labels) * slot
        out.append(
            f'<text x="{pad_l}" y="{height - 6}">{_e(ticks[0])}</text>'
            f'<text x="{right:.1f}" y="{height - 6}" text-anchor="end">{_e(ticks[1])}</text>'
        )
    else:
        # One bar per value: label under its bar, thinned out so labels do not collide.
        step = max(1, math.ceil(len(labels) * 40 / plot_w))
        for i in range(0, len(labels), step):
            x = pad_l + (i + 0.5) * slot
            out.append(
                f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle">{_e(labels[i])}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _categorical_chart(distribution: Distribution) -> str:
    labels = [str(label) for label in distribution.points]
    table = pd.DataFrame(
        {"reference": _shares(distribution.reference), "current": _shares(distribution.current)}
    )
    # The last bar of a folded distribution is the sum of the categories that did not fit.
    folded = table.iloc[-1:] if distribution.folded else table.iloc[0:0]
    table = table.iloc[: len(table) - len(folded)]
    # Most common first (in either sample); ties keep the reference's order of frequency.
    table = table.sort_values("reference", ascending=False, kind="stable")
    table = table.loc[table.max(axis=1).sort_values(ascending=False, kind="stable").index]
    names = [labels[i] for i in table.index]
    if len(table) + len(folded) > _MAX_CATEGORIES:
        head, tail = table.iloc[: _MAX_CATEGORIES - 1], table.iloc[_MAX_CATEGORIES - 1 :]
        rest = pd.concat([tail, folded]).sum()
        names = [*names[: len(head)], f"({len(tail) + distribution.folded} more)"]
        table = pd.concat([head, rest.to_frame().T])
    table.index = names
    unseen = {
        label
        for label, ref_count, cur_count in zip(
            labels, distribution.reference, distribution.current, strict=True
        )
        if ref_count == 0 and cur_count > 0
    }
    if distribution.folded:
        unseen.discard(labels[-1])

    row_h, label_w, width = 26, 170, _CHART_WIDTH
    plot_w = width - label_w - 70
    height = row_h * len(table) + 8
    top = max(float(table.to_numpy().max()), 1e-12)
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for i, (label, row) in enumerate(table.iterrows()):
        y = 4 + i * row_h
        shown = str(label) if len(str(label)) <= 24 else str(label)[:23] + "…"
        suffix = " (new)" if label in unseen else ""
        out.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{_e(shown + suffix)}'
            f"<title>{_e(label)}</title></text>"
        )
        for k, name in enumerate(("reference", "current")):
            w = plot_w * float(row[name]) / top
            by = y + 2 + k * 11
            out.append(
                f'<rect x="{label_w}" y="{by}" width="{w:.1f}" height="10" '
                f'fill="{_COLOURS[name]}"><title>{_e(label)}: {name} '
                f"{100 * float(row[name]):.2f}%</title></rect>"
                f'<text x="{label_w + w + 4:.1f}" y="{by + 9}">{100 * float(row[name]):.1f}%'
                "</text>"
            )
    out.append("</svg>")
    return "".join(out)
