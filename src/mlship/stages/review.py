"""What a reviewer reads: the run's reports as one Markdown page, posted where the CI shows it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlship import dvc_repo, github, report
from mlship.paths import PipelinePaths


@dataclass(frozen=True)
class Published:
    page: str
    job_summary: bool  # appended to GitHub's job summary
    comment_url: str | None  # the pull-request comment created or updated
    note: str  # where it went, for people


def publish(
    paths: PipelinePaths, env: Mapping[str, str], base_ref: str = "main", summary_only: bool = False
) -> Published:
    """The gate report, `dvc metrics diff` against `base_ref`, the load test and deploys as one
    page. In GitHub Actions: the job summary and, on a pull request, one comment updated in
    place. Elsewhere nothing is posted (the caller prints the page)."""
    page = report.run_markdown(paths, dvc_repo.metrics_diff(base_ref), base_ref)
    if env.get("GITHUB_ACTIONS") != "true":
        return Published(page, False, None, "not in GitHub Actions: printed only")
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
