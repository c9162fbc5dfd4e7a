"""The run's reports that describe the model on disk, and only those.

The gate, the load test and each deploy write a JSON report naming the model file they
judged by its sha256. The run report, the summary and the pull-request comment show a
section only when that digest is the model's in the model directory now; a report of
another model (an earlier run's load test, a gate of the previous candidate) is left out
with a line saying why, never shown as this model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlship import files
from mlship.card import MODEL_FILE
from mlship.errors import InputError
from mlship.paths import PipelinePaths

ENVIRONMENTS = ("staging", "production")


@dataclass(frozen=True)
class Section:
    """One report of this model: its JSON, and its Markdown file when there is one."""

    report: dict[str, Any]
    markdown: Path | None


@dataclass(frozen=True)
class ThisModel:
    digest: str | None  # of the model file; None when there is none
    gate: Section | None = None
    loadtest: Section | None = None
    deploys: dict[str, Section] = field(default_factory=dict)
    left_out: list[str] = field(default_factory=list)  # why a report on file is not shown


def this_models_reports(paths: PipelinePaths) -> ThisModel:
    """The gate, load test and deploy reports on file that judged the model file in the
    model directory (by digest); the others listed in `left_out` with the reason."""
    model_file = paths.model_dir / MODEL_FILE
    digest = files.sha256(model_file) if model_file.is_file() else None
    found = ThisModel(digest)
    candidates: list[tuple[str, Path, Path | None]] = [
        ("gate", paths.gate_json, paths.gate_md),
        ("loadtest", paths.loadtest_json, paths.loadtest_md),
    ]
    candidates += [
        (env, paths.deploy_report(env), paths.deploy_report(env).with_suffix(".md"))
        for env in ENVIRONMENTS
    ]
    for name, report_file, markdown in candidates:
        if not report_file.is_file():
            continue
        try:
            report = files.read_json(report_file)
        except InputError as error:
            found.left_out.append(f"{report_file}: unreadable ({error})")
            continue
        judged = report.get("model_sha256")
        if digest is None or judged != digest:
            what = f"model sha256 {str(judged)[:12]}" if judged else "no model digest"
            found.left_out.append(
                f"{report_file} is left out: it describes another model ({what}), not the one "
                f"in {paths.model_dir}/ (sha256 {str(digest)[:12]})"
            )
            continue
        section = Section(report, markdown if markdown and markdown.is_file() else None)
        if name == "gate":
            found = replace(found, gate=section)
        elif name == "loadtest":
            found = replace(found, loadtest=section)
        else:
            found.deploys[name] = section
    return found
