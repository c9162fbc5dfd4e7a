"""The main job's closing summary, built from the files the stages wrote."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from mlship.card import ModelCard
from mlship.files import read_json
from mlship.paths import PipelinePaths
from mlship.registry.runs import run_link
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

    model = card.estimator.rsplit(".", 1)[-1] or card.model_kind
    table = Table(title=f"mlship: {model} predicting {card.target}", min_width=48)
    table.add_column("metric")
    table.add_column("value", justify="right")
    shown = SUMMARY_METRICS[card.task]
    for key in shown:
        table.add_row(key, _fmt(metrics.get(key)))
    for label, values in metrics.get("per_class", {}).items():
        table.add_row(f"recall ({label})", _fmt(values["recall"]))
    table.add_row("test rows", str(metrics["rows"]))
    table.add_row("µs per row (batch)", f"{latency['batch_us_per_row']:.1f}")
    table.add_row("ms per single-row call", f"{latency['single_row_ms_median']:.2f}")
    console.print(table)

    verdict = "passed" if contract["passed"] else "FAILED"
    console.print(f"data contract: {verdict} ({paths.contract_md})")
    if paths.gate_json.is_file():
        gate = read_json(paths.gate_json)
        judged = "this model" if gate.get("candidate_run_id") == card.run_id else "an earlier model"
        outcome = "passed" if gate.get("passed") else f"FAILED: {', '.join(gate['failed'])}"
        console.print(f"gate ({judged}): {outcome} ({paths.gate_md})", soft_wrap=True)
    if paths.image_json.is_file():
        built = ImageRecord.load(paths.image_json)
        if built.run_id == card.run_id:
            pushed = "pushed" if built.pushed else "not pushed"
            console.print(f"image: {built.reference} ({pushed})", soft_wrap=True)
    if paths.loadtest_json.is_file():
        load = read_json(paths.loadtest_json)
        outcome = "passed" if load.get("passed") else "FAILED"
        summary = load.get("summary", {})
        console.print(
            f"load test: {outcome} against {load.get('target')} "
            f"(p99 {summary.get('p99_ms', float('nan')):.0f} ms, {paths.loadtest_md})",
            soft_wrap=True,
        )
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
    passed = paths.gate_json.is_file() and read_json(paths.gate_json).get("passed") is True
    console.print("next:")
    for command, why in next_steps(paths, passed):
        console.print(f"  {command:<34} [dim]# {why}[/]", highlight=False)


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


def run_markdown(
    paths: PipelinePaths, metrics_diff: str | None, base_ref: str, report_url: str | None = None
) -> str:
    """One Markdown page of what this run did: the gate report, where the HTML run report
    is, the metric diff against `base_ref`, then the load test and deploy reports."""
    parts = [
        paths.gate_md.read_text(encoding="utf-8")
        if paths.gate_md.is_file()
        else "## mlship gate: not run\n\nThe pipeline stopped before the gate; see the log.\n"
    ]
    if report_url is not None and paths.report_html.is_file():
        parts.append(
            f"📊 The run report with plots: `{paths.report_html.name}` in the "
            f"[reports artifact]({report_url}).\n"
        )
    if metrics_diff is None:
        parts.append(f"Metrics: no `{base_ref}` metrics to compare with.\n")
    else:
        parts.append(
            f"<details><summary>Metrics: this change against <code>{base_ref}</code>"
            f"</summary>\n\n{metrics_diff.strip()}\n\n</details>\n"
        )
    extra = [
        paths.loadtest_md,
        *(paths.deploy_report(env).with_suffix(".md") for env in ("staging", "production")),
    ]
    parts += [path.read_text(encoding="utf-8") for path in extra if path.is_file()]
    return "\n".join(parts)
