"""What a reviewer reads: the run's reports as one Markdown page, posted where the CI shows
it, and as one HTML page with plots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlship import files
from mlship.card import ModelCard
from mlship.config.settings import Settings
from mlship.paths import PipelinePaths
from mlship.registry import runs
from mlship.reports.html_report import RunFacts, render
from mlship.reports.sections import this_models_reports
from mlship.reports.summary import run_markdown
from mlship.ship.ci import github


@dataclass(frozen=True)
class Published:
    page: str
    job_summary: bool  # appended to GitHub's job summary
    comment_url: str | None  # the pull-request comment created or updated
    note: str  # where it went, for people


def publish(paths: PipelinePaths, env: Mapping[str, str], summary_only: bool = False) -> Published:
    """The gate report (with the metrics and params beside the champion's), the load test
    and deploys of this model as one page. In GitHub Actions: the job summary and, on a pull
    request, one comment updated in place. Elsewhere nothing is posted (the caller prints the
    page)."""
    if env.get("GITHUB_ACTIONS") != "true":
        page = run_markdown(paths)
        return Published(page, False, None, "not in GitHub Actions: printed only")
    run_url = "{}/{}/actions/runs/{}#artifacts".format(
        env.get("GITHUB_SERVER_URL", "https://github.com"),
        env.get("GITHUB_REPOSITORY", ""),
        env.get("GITHUB_RUN_ID", ""),
    )
    page = run_markdown(paths, run_url)
    summary_file = env.get("GITHUB_STEP_SUMMARY")
    if summary_file:
        with Path(summary_file).open("a", encoding="utf-8") as out:
            out.write(page + "\n")
    if summary_only:
        return Published(page, bool(summary_file), None, "the job summary only")
    run = github.Run.from_env(env)
    if run.pull_request is None:
        return Published(page, bool(summary_file), None, "not a pull request: the job summary only")
    url = github.upsert_comment(run, page)
    return Published(page, bool(summary_file), url, f"pull request comment: {url}")


def html_report(settings: Settings, paths: PipelinePaths, positive_label: str | None) -> Path:
    """The run report as one HTML page (reports/report.html), attached to the MLflow run:
    only the reports of the model on disk (reports.sections), the others named as left out."""
    card = ModelCard.load(paths.model_dir)
    found = this_models_reports(paths)
    gate = found.gate.report if found.gate else None
    champion = None
    if gate is not None and gate.get("champion_version") and paths.champion_predictions.is_file():
        champion = pd.read_csv(paths.champion_predictions)
    facts = RunFacts(
        card=card,
        metrics=files.read_json(paths.metrics),
        predictions=pd.read_csv(paths.predictions),
        contract=files.read_json(paths.contract_json),
        gate=gate,
        champion=champion,
        loadtest=found.loadtest.report if found.loadtest else None,
        positive_label=positive_label,
        left_out=tuple(found.left_out),
    )
    files.write_text(paths.report_html, render(facts))
    if card.run_id is not None:
        runs.log_artifacts(settings, card.run_id, [paths.report_html], "report")
    return paths.report_html
