"""The gate stage against a throw-away sqlite MLflow store, no `dvc repro`: a first model
passes on thresholds, a weaker one fails the paired comparison with the champion, stale or
missing inputs are refused."""

from __future__ import annotations

import json

import pytest

from mlship.errors import InputError
from mlship.stages.gate import gate
from mlship.stages.release import promote, register
from tests.conftest import Project, text_frame

LOCAL = {"MLSHIP_APPROVER": "ana"}


def _gate(project: Project, **sections: dict[str, object]) -> object:
    return gate(project.stage_inputs(project.params(**sections)), stale=lambda _: [])


def test_a_first_model_passes_on_thresholds_and_the_contract(project: Project) -> None:
    # given a trained, evaluated model and no champion
    project.run_pipeline(project.params())
    # when gated
    verdict = _gate(project)
    # then it passes without a comparison, and the reports say so
    assert verdict.passed and verdict.champion_version is None
    assert {c.group for c in verdict.criteria} == {"threshold", "contract"}
    report = json.loads(project.paths.gate_json.read_text())
    assert report["passed"] and report["candidate_run_id"]
    assert project.paths.gate_md.read_text().startswith("<!-- mlship-gate -->")
    assert project.paths.gate_junit.is_file()


def test_a_weaker_candidate_fails_against_the_champion(project: Project) -> None:
    # given a champion trained on clean labels
    project.run_pipeline(project.params())
    assert _gate(project).passed
    register(project.stage_inputs())
    promote(project.settings, LOCAL)
    # and a candidate trained on shuffled labels, judged with thresholds it can clear
    noisy = text_frame(20)
    noisy["score"] = noisy["score"].sample(frac=1.0, random_state=3).to_numpy()
    lenient = {"min_accuracy": 0.0, "min_macro_f1": 0.0}
    project.run_pipeline(project.params(gate=lenient), train_rows=noisy)
    # when gated / then the paired comparison with version 1 fails it
    verdict = _gate(project, gate=lenient)
    assert verdict.champion_version == "1" and not verdict.passed
    assert [c.group for c in verdict.failed] == ["champion", "champion"]
    assert "champion v1" in verdict.failed[0].detail


def test_stale_or_missing_inputs_are_refused(project: Project) -> None:
    project.run_pipeline(project.params())
    with pytest.raises(InputError, match=r"stale: these stages differ from dvc\.lock: train"):
        gate(project.stage_inputs(project.params()), stale=lambda _: ["train"])
    project.paths.metrics.unlink()
    with pytest.raises(InputError, match=r"evaluate\.json: not found"):
        _gate(project)


def test_an_edited_metrics_file_is_refused(project: Project) -> None:
    # given an evaluation whose metrics file was edited to look better (and committed to DVC)
    project.run_pipeline(project.params())
    metrics = json.loads(project.paths.metrics.read_text())
    project.paths.metrics.write_text(json.dumps({**metrics, "accuracy": 0.999}))
    # when gated / then the recomputed scores disagree and the gate refuses to judge
    with pytest.raises(InputError, match=r"does not match the model's own scores .*accuracy"):
        _gate(project)
