"""The main job's closing summary, built from the files the stages wrote."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mlship.card import ModelCard
from mlship.files import read_json
from mlship.paths import PipelinePaths
from mlship.registry.runs import run_link
from mlship.reports.sections import this_models_reports
from mlship.ship.image import ImageRecord


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


SUMMARY_METRICS = {
    "classification": ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2", "mape", "median_absolute_error"),
}


def print_summary(paths: PipelinePaths, console: Console) -> None:
    metrics = read_json(paths.metrics)
    latency = read_json(paths.latency)
    contract = read_json(paths.contract_json)
    card = ModelCard.load(paths.model_dir)
    found = this_models_reports(paths)

    estimator = card.estimator.rsplit(".", 1)[-1] or card.model_kind
    title = f"{card.name} ({estimator})" if card.name else estimator
    table = Table(title=f"mlship: {title} predicting {card.target}", min_width=48)
    baseline = metrics.get("baseline") or {}
    table.add_column("metric")
    table.add_column("value", justify="right")
    if baseline:
        table.add_column(f"baseline: always {baseline.get('answer')!r}", justify="right")
    shown = SUMMARY_METRICS[card.task]
    for key in shown:
        table.add_row(key, _fmt(metrics.get(key)), *_beside(baseline, baseline.get(key)))
    for label, values in metrics.get("per_class", {}).items():
        constant = 1.0 if label == baseline.get("answer") else 0.0
        table.add_row(f"recall ({label})", _fmt(values["recall"]), *_beside(baseline, constant))
    table.add_row("test rows", str(metrics["rows"]), *_beside(baseline, ""))
    table.add_row(
        "µs per row (batch)", f"{latency['batch_us_per_row']:.1f}", *_beside(baseline, "")
    )
    table.add_row(
        "ms per single-row call",
        f"{latency['single_row_ms_median']:.2f}",
        *_beside(baseline, ""),
    )
    console.print(table)

    verdict = "passed" if contract["passed"] else "FAILED"
    console.print(f"data contract: {verdict} ({paths.contract_md})")
    gate = found.gate.report if found.gate else None
    if gate is None:
        console.print("gate: not run on this model")
    elif gate.get("refused"):
        console.print(f"gate: REFUSED to judge: {gate['refused']}", soft_wrap=True)
    else:
        outcome = "passed" if gate.get("passed") else f"FAILED: {', '.join(gate['failed'])}"
        console.print(f"gate: {outcome} ({paths.gate_md})", soft_wrap=True)
    if paths.image_json.is_file():
        built = ImageRecord.load(paths.image_json)
        if built.run_id == card.run_id:
            pushed = "pushed" if built.pushed else "not pushed"
            console.print(f"image: {built.reference} ({pushed})", soft_wrap=True)
    if found.loadtest is not None:
        load = found.loadtest.report
        outcome = "passed" if load.get("passed") else "FAILED"
        summary = load.get("summary", {})
        console.print(
            f"load test: {outcome} against {load.get('target')} "
            f"(p99 {summary.get('p99_ms', float('nan')):.0f} ms, {paths.loadtest_md})",
            soft_wrap=True,
        )
    for why in found.left_out:
        console.print(f"[dim]{why}[/]", soft_wrap=True, highlight=False)
    dirty = " [yellow]with uncommitted changes: not reproducible from that commit[/]"
    console.print(
        f"model: {card.name or 'unnamed'} in {paths.model_dir}/ "
        f"(git {card.git.sha[:12]}{dirty if card.git.dirty else ''})"
    )
    console.print(f"metrics: {paths.metrics}, predictions: {paths.predictions}")
    run = card.mlflow
    if run is not None:
        link = run_link(run.tracking_uri or "?", run.experiment_id or "?", run.run_id)
        console.print(f"MLflow: {link}", soft_wrap=True)
    passed = gate is not None and gate.get("passed") is True
    console.print("next:")
    for command, why in next_steps(paths, passed):
        console.print(f"  {command:<34} [dim]# {why}[/]", highlight=False)


def _beside(baseline: dict[str, Any], value: Any) -> list[str]:
    """The baseline's cell, when there is a baseline column."""
    return [_fmt(value) if value not in ("", None) else ""] if baseline else []


def next_steps(paths: PipelinePaths, gate_passed: bool) -> list[tuple[str, str]]:
    """What to run after the main job, as commands."""
    steps = [(f"open {paths.report_html}", "the run report: verdict, criteria, plots")]
    if not gate_passed:
        return [
            *steps,
            (
                f"less {paths.gate_md}",
                "why the gate refused; then change "
                "params.yaml or model/ and run `make pipeline` again",
            ),
        ]
    return [
        *steps,
        ("make serve", f"serve {paths.model_dir}/ on http://127.0.0.1:8000 (a page at /)"),
        ("make promote APPROVER=<you>", "make @candidate the @champion in the registry"),
    ]


def run_markdown(paths: PipelinePaths, report_url: str | None = None) -> str:
    """One Markdown page of what this run did to this model: the gate report (metrics and
    params beside the champion's), where the HTML run report is, then the load test and
    deploy reports — each only if it describes the model on disk (reports.sections)."""
    found = this_models_reports(paths)
    gate = found.gate
    parts = [
        gate.markdown.read_text(encoding="utf-8")
        if gate is not None and gate.markdown is not None
        else "<!-- mlship-gate -->\n## mlship gate: not run on this model\n\n"
        "The pipeline stopped before the gate judged this model; see the log.\n"
    ]
    if report_url is not None and paths.report_html.is_file():
        parts.append(
            f"📊 The run report with plots: `{paths.report_html.name}` in the "
            f"[reports artifact]({report_url}).\n"
        )
    sections = [found.loadtest, *found.deploys.values()]
    parts += [
        section.markdown.read_text(encoding="utf-8")
        for section in sections
        if section is not None and section.markdown is not None
    ]
    if found.left_out:
        parts.append("\n".join(f"- {why}" for why in found.left_out) + "\n")
    return "\n".join(parts)
