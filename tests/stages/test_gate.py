"""The gate stage against a throw-away sqlite MLflow store, no `dvc repro`: a first model
passes on thresholds, a weaker one fails the paired comparison with the champion, stale or
missing inputs are refused."""

from __future__ import annotations

import json

import pytest

from mlship import files
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
    assert {c.group for c in verdict.criteria} == {"threshold", "baseline", "contract", "attack"}
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
    # when gated / then the paired comparison with version 1 fails it (and a model fit to
    # noise does no better than always answering the most frequent class)
    verdict = _gate(project, gate=lenient)
    assert verdict.champion_version == "1" and not verdict.passed
    failed = [c for c in verdict.failed if c.group != "attack"]
    assert [c.group for c in failed] == ["baseline", "champion", "champion"]
    assert "champion v1" in failed[1].detail
    # and a model fit to noise has memorised its rows: membership inference tells them apart
    leaked = [c.name for c in verdict.failed if c.group == "attack"]
    assert leaked == ["membership inference advantage <= 0.2"]


def test_stale_or_missing_inputs_are_refused(project: Project) -> None:
    project.run_pipeline(project.params())
    assert _gate(project).passed
    with pytest.raises(InputError, match=r"stale: these stages differ from dvc\.lock: train"):
        gate(project.stage_inputs(project.params()), stale=lambda _: ["train"])
    # the reports then say the gate refused: the earlier pass is not left to be read
    refused = json.loads(project.paths.gate_json.read_text())
    assert refused["passed"] is False and "stale" in refused["refused"]
    assert refused["model_sha256"] == files.sha256(project.paths.model_dir / "model.skops")
    assert "REFUSED to judge" in project.paths.gate_md.read_text()
    assert "GateCriterionFailed" in project.paths.gate_junit.read_text()
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


def test_a_swapped_test_split_fails_the_gate(project: Project) -> None:
    # given a pipeline run, then a test split replaced by hand with rows the model gets
    # right, evaluated again so every recorded metric agrees with it (dvc commit; repro)
    project.run_pipeline(project.params())
    from mlship.files import read_table, write_parquet
    from mlship.stages import pipeline

    easy = read_table(str(project.paths.train)).head(30).assign(review=lambda f: f.review + " !")
    write_parquet(project.paths.test, easy)
    params = project.params()
    files = pipeline.EvaluationFiles.of(project.paths)
    pipeline.evaluate(params, project.settings, project.paths.model_dir, project.paths.test, files)
    # when gated / then the split is found not to be ingest's own, and the gate fails
    verdict = _gate(project)
    assert [c.name for c in verdict.failed] == ["splits derived from the source"]
    assert "test differ from what ingest derives from train.csv" in verdict.failed[0].detail


def test_a_test_set_changed_since_the_champion_is_shown_and_judged_with_the_champions(
    project: Project,
) -> None:
    """A cherry-picked test source passes its own thresholds; the gate then shows the change
    (source, digest, rows, balance beside the champion's) and judges the candidate on the
    champion's test set as well, where it fails."""
    from mlship.pipeline.artifacts import load_model
    from mlship.pipeline.features import feature_frame

    # given a champion gated on the project's test set
    project.run_pipeline(project.params())
    assert _gate(project).passed
    register(project.stage_inputs())
    promote(project.settings, LOCAL)
    # and a candidate fit to shuffled labels, with a test set of the rows it gets right
    noisy = text_frame(20)
    noisy["score"] = noisy["score"].sample(frac=1.0, random_state=3).to_numpy()
    project.run_pipeline(project.params(), train_rows=noisy)
    candidate = load_model(project.paths.model_dir)
    pool = text_frame(80).assign(review=lambda f: f.review + " again")
    right = pool[candidate.predict(feature_frame(pool, project.params().data)) == pool["score"]]
    assert len(right) >= 30 and right["score"].value_counts().min() >= 5
    project.run_pipeline(project.params(), train_rows=noisy, test_rows=right)
    # when gated with thresholds it clears on its own test set
    strict = {"min_accuracy": 0.9, "min_macro_f1": 0.9}
    verdict = _gate(project, gate=strict)
    own = {c.name: c.passed for c in verdict.criteria}
    assert own["accuracy >= 0.9"] and own["macro_f1 >= 0.9"]
    # then on the champion's test set it fails them
    assert not own["accuracy >= 0.9 — on the champion's test set"]
    assert not verdict.passed
    report = project.paths.gate_md.read_text()
    assert "The test set changed since the champion v1 was gated" in report
    assert f"| rows | 30 | {len(right)} |" in report
