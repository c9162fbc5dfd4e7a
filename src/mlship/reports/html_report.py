"""The run report: one self-contained HTML page (inline SVG, inline CSS, no scripts, no
network) that shows a reviewer why the gate decided as it did."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlship.card import ModelCard
from mlship.reports import plots

MAX_CLASS_PLOTS = 4  # ROC/PR/calibration per class, for the first classes of a multiclass model

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1180px;color:#1f2328;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}.muted{color:#59636e}.verdict{display:inline-block;padding:3px 10px;
border-radius:12px;font-weight:600;color:#fff}.pass{background:#1a7f37}.fail{background:#cf222e}
.none{background:#59636e}td.ok{color:#1a7f37;font-weight:600}
td.bad{color:#cf222e;font-weight:600}td.warn{color:#9a6700;font-weight:600}table{border-collapse:collapse;width:100%;font-size:13px}
td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #d0d7de;border-radius:6px;
padding:4px}.plot svg{display:block;width:460px;height:auto}
"""


@dataclass(frozen=True)
class RunFacts:
    """What the run wrote that the page shows."""

    card: ModelCard
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # the candidate's, one row per test row
    contract: dict[str, Any]
    gate: dict[str, Any] | None = None
    champion: pd.DataFrame | None = None  # the champion's answers on the same rows
    loadtest: dict[str, Any] | None = None
    positive_label: str | None = None
    left_out: tuple[str, ...] = ()  # reports on file of another model, and why


def _e(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any) -> str:
    return "" if value is None else (f"{value:.4f}" if isinstance(value, float) else _e(value))


def render(facts: RunFacts) -> str:
    card = facts.card
    sections = [_header(facts), _criteria(facts.gate), _metrics(facts)]
    if card.task == "classification":
        sections.append(_classification(facts))
    else:
        sections.append(_regression(facts))
    sections += [_contract(facts.contract), _loadtest(facts.loadtest), _left_out(facts.left_out)]
    title = f"mlship run report: {_model(card)} predicting {card.target}"
    return head(title) + "<body>" + "".join(sections) + "</body></html>\n"


def head(title: str) -> str:
    """A page's start: no external assets, and an empty icon so no favicon request."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<link rel=icon href='data:,'><title>{_e(title)}</title><style>{STYLE}</style></head>"
    )


def _model(card: ModelCard) -> str:
    """The model's name and its estimator's class, as people call it."""
    estimator = card.estimator.rsplit(".", 1)[-1] or card.model_kind
    return f"{card.name} ({estimator})" if card.name else estimator


def _header(facts: RunFacts) -> str:
    card, gate = facts.card, facts.gate
    if gate is None:
        verdict = "<span class='verdict none'>gate not run on this model</span>"
    elif gate.get("refused"):
        verdict = "<span class='verdict fail'>gate REFUSED to judge</span>"
    elif gate.get("passed"):
        verdict = "<span class='verdict pass'>gate PASSED</span>"
    else:
        verdict = f"<span class='verdict fail'>gate FAILED ({len(gate.get('failed', []))})</span>"
    champion = (gate or {}).get("champion_version")
    versus = f"against champion version {_e(champion)}" if champion else "no champion yet"
    return (
        f"<h1>{_e(_model(card))} predicting <code>{_e(card.target)}</code> {verdict}</h1>"
        f"<p class=muted>{_e(card.task)} · MLflow run <code>{_e(card.run_id)}</code> · git "
        f"<code>{_e(card.git.sha[:12])}</code> · {versus} · trained {_e(card.trained_at)}"
        f" · judged {_e((gate or {}).get('judged_at', '—'))}</p>"
    )


def _criteria(gate: dict[str, Any] | None) -> str:
    if gate is None:
        return "<h2>Gate</h2><p>The gate has not judged this model yet.</p>"
    if gate.get("refused"):
        return f"<h2>Gate</h2><p>The gate refused to judge: {_e(gate['refused'])}</p>"
    rows = []
    for c in gate.get("criteria", []):
        interval = c.get("interval")
        bounds = "" if not interval else f"[{interval[0]:+.4f}, {interval[1]:+.4f}]"
        p_value = "" if c.get("p_value") is None else f"{c['p_value']:.4g}"
        # words, not emoji: a machine without an emoji font draws those as empty boxes
        mark = "<td class=ok>pass</td>" if c.get("passed") else "<td class=bad>FAIL</td>"
        if c.get("passed") and (c.get("difference") or 0.0) < 0:  # within the margin, yet worse
            mark = "<td class=warn title='passed within the margin'>worse</td>"
        rows.append(
            f"<tr>{mark}<td>{_e(c['name'])}</td>"
            f"<td class=num>{_number(c.get('value'))}</td>"
            f"<td class=num>{_number(c.get('champion'))}</td>"
            f"<td class=num>{_number(c.get('limit'))}</td><td class=num>{bounds}</td>"
            f"<td class=num>{p_value}</td><td>{_e(c.get('detail', ''))}</td></tr>"
        )
    trusted = gate.get("trusted_types") or []
    note = (
        (
            "<p class=muted>Types trusted beyond the built-in list: "
            + ", ".join(f"<code>{_e(t)}</code>" for t in trusted)
            + "</p>"
        )
        if trusted
        else ""
    )
    return (
        "<h2>Why the gate decided</h2><table><tr><th></th><th>criterion</th><th>candidate"
        "</th><th>champion / baseline</th><th>threshold</th><th>interval</th><th>p-value</th>"
        "<th>detail</th></tr>" + "".join(rows) + "</table>" + note
    )


def _metrics(facts: RunFacts) -> str:
    """The candidate beside the trivial baseline and the champion, on the same test rows."""
    metrics = facts.metrics
    baseline = metrics.get("baseline") or {}
    champion = (facts.gate or {}).get("champion_metrics")
    heads = ["this model"]
    if baseline:
        heads.append(f"baseline: always {baseline.get('answer')!r}")
    if champion:
        heads.append(f"champion v{(facts.gate or {}).get('champion_version')}")
    keys = (
        ("rmse", "mae", "r2", "mape")
        if facts.card.task == "regression"
        else ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss")
    )
    rows = []
    for key in keys:
        cells = [metrics.get(key), *([baseline.get(key)] if baseline else [])]
        cells += [champion.get(key)] if champion else []
        rows.append((key, cells))
    for label, values in (metrics.get("per_class") or {}).items():
        cells = [values.get("recall")]
        cells += [1.0 if label == baseline.get("answer") else 0.0] if baseline else []
        cells += (
            [(champion.get("per_class") or {}).get(label, {}).get("recall")] if champion else []
        )
        rows.append((f"recall ({label})", cells))
    body = "".join(
        f"<tr><td>{_e(key)}</td>"
        + "".join(f"<td class=num>{_number(cell)}</td>" for cell in cells)
        + "</tr>"
        for key, cells in rows
    )
    return (
        "<h2>Metrics on the test set</h2><table><tr><th>metric</th>"
        + "".join(f"<th>{_e(head)}</th>" for head in heads)
        + f"</tr>{body}</table>"
    )


def _plots(*svgs: str) -> str:
    return "<div class=plots>" + "".join(f"<div class=plot>{svg}</div>" for svg in svgs) + "</div>"


def _classification(facts: RunFacts) -> str:
    classes = list(facts.card.classes)
    predictions, champion = facts.predictions, facts.champion
    truth = predictions["actual"].astype(str).to_numpy()
    confusion = facts.metrics.get("confusion_matrix", {"labels": [], "matrix": []})
    per_class = facts.metrics.get("per_class", {})
    figures = [
        plots.confusion_matrix(confusion["labels"], confusion["matrix"]),
        plots.per_class(
            list(per_class),
            {
                measure: [values[measure] for values in per_class.values()]
                for measure in ("precision", "recall", "f1")
            },
        ),
    ]
    if f"proba_{classes[0]}" in predictions:
        shown = [facts.positive_label or classes[-1]] if len(classes) == 2 else classes
        for label in shown[:MAX_CLASS_PLOTS]:
            is_label = truth == label
            if is_label.all() or not is_label.any():
                continue
            candidate = predictions[f"proba_{label}"].to_numpy(dtype=float)
            rival = (
                champion[f"proba_{label}"].to_numpy(dtype=float)
                if champion is not None and f"proba_{label}" in champion
                else None
            )
            figures += [
                *plots.roc_and_pr(is_label, candidate, rival, label),
                plots.calibration(is_label, candidate, rival, label),
            ]
    return "<h2>Where the model succeeds and fails (test set)</h2>" + _plots(*figures)


def _regression(facts: RunFacts) -> str:
    actual = facts.predictions["actual"].to_numpy(dtype=float)
    candidate = facts.predictions["predicted"].to_numpy(dtype=float)
    rival = (
        facts.champion["predicted"].to_numpy(dtype=float) if facts.champion is not None else None
    )
    m = facts.metrics
    summary = " · ".join(f"{k} {_number(m.get(k))}" for k in ("rmse", "mae", "r2", "mape"))
    return f"<h2>Errors on the test set</h2><p>{summary}</p>" + _plots(
        plots.predicted_vs_actual(actual, candidate, rival),
        plots.residuals(actual, candidate, rival),
    )


def _contract(contract: dict[str, Any]) -> str:
    checks = contract.get("checks", [])
    failed = [c for c in checks if not c.get("passed")]
    head = (
        f"<h2>Data contract</h2><p>{len(checks) - len(failed)} of {len(checks)} rules passed.</p>"
    )
    if not failed:
        return head
    rows = "".join(
        f"<tr><td>{_e(c['rule'])}</td><td>{_e(c['where'])}</td><td>{_e(c['detail'])}</td></tr>"
        for c in failed
    )
    return head + f"<table><tr><th>rule</th><th>where</th><th>detail</th></tr>{rows}</table>"


def _left_out(why: tuple[str, ...]) -> str:
    if not why:
        return ""
    items = "".join(f"<li>{_e(line)}</li>" for line in why)
    return f"<h2>Reports left out</h2><ul class=muted>{items}</ul>"


def _loadtest(report: dict[str, Any] | None) -> str:
    if report is None:
        return "<h2>Load test</h2><p>Not run for this model.</p>"
    summary = report.get("summary", {})
    percentiles = {
        k.removesuffix("_ms"): float(v)
        for k, v in summary.items()
        if k.startswith("p") and k.endswith("_ms") and np.isfinite(v)
    }
    verdict = "passed" if report.get("passed") else "FAILED"
    text = (
        f"<h2>Load test: {verdict}</h2><p>{_e(report.get('target'))}: "
        f"{summary.get('requests', 0):,.0f} requests at {summary.get('rps', 0):,.0f} req/s, "
        f"{summary.get('failures', 0):,.0f} failures.</p>"
    )
    return text + (_plots(plots.latency(percentiles)) if percentiles else "")
