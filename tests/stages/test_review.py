"""The run report, the summary and the pull-request page never mix runs: each section is
shown only when its report judged the model on disk (by digest); another model's load test
or an earlier gate's verdict is left out with a line saying why."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from mlship import files
from mlship.errors import InputError
from mlship.reports.summary import print_summary, run_markdown
from mlship.stages.gate import gate
from mlship.stages.review import html_report
from tests.conftest import Project


def test_a_load_test_of_another_model_is_left_out_not_shown_as_this_ones(
    project: Project,
) -> None:
    # given a gated model and the load test an earlier model left behind
    project.run_pipeline(project.params())
    assert gate(project.stage_inputs(project.params()), stale=lambda _: []).passed
    earlier = {"passed": True, "model_sha256": "0" * 64, "target": "local server", "summary": {}}
    project.paths.loadtest_json.write_text(json.dumps(earlier))
    project.paths.loadtest_md.write_text("## Load test: passed, 1,374 requests\n")
    # when the reports are written / then the load test is not this model's
    page = html_report(project.settings, project.paths, "great").read_text()
    assert "gate PASSED" in page and "Load test: passed" not in page
    assert "Not run for this model" in page
    assert "loadtest.json is left out: it describes another model" in page
    markdown = run_markdown(project.paths)
    assert "1,374 requests" not in markdown and "left out" in markdown
    # and the model's own load test is shown
    digest = files.sha256(project.paths.model_dir / "model.skops")
    project.paths.loadtest_json.write_text(json.dumps(earlier | {"model_sha256": digest}))
    assert "Load test: passed" in html_report(project.settings, project.paths, "great").read_text()


def test_after_the_gate_refused_no_earlier_verdict_is_shown(project: Project) -> None:
    # given a model that passed, then a gate that refused it as stale
    project.run_pipeline(project.params())
    assert gate(project.stage_inputs(project.params()), stale=lambda _: []).passed
    with pytest.raises(InputError):
        gate(project.stage_inputs(project.params()), stale=lambda _: ["train"])
    # when the report and the summary are written / then they say so
    page = html_report(project.settings, project.paths, "great").read_text()
    assert "gate REFUSED to judge" in page and "gate PASSED" not in page
    console = Console(record=True, width=200)
    print_summary(project.paths, console)
    said = console.export_text()
    assert "gate: REFUSED to judge: the evaluation is stale" in said
    assert "make promote" not in said  # no next step that assumes a pass
    # and the model's metrics stand beside the trivial baseline's
    assert "baseline: always" in said and "recall (great)" in said
