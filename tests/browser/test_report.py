"""The HTML run report in a real browser: every plot renders, nothing is broken, no console
error, no request leaves the page; for a classifier judged against a champion and for a
regressor."""

from __future__ import annotations

from typing import Any

import pytest

from mlship.stages.gate import gate
from mlship.stages.release import promote, register
from mlship.stages.review import html_report
from tests.conftest import Project, text_frame

pytestmark = pytest.mark.browser

REGRESSION = {
    "data": {"task": "regression", "positive_label": None},
    "validate": {"labels": None},
    "train": {"model": {"kind": "estimator", "class": "sklearn.linear_model.Ridge"}},
    "gate": {"min_accuracy": None, "min_macro_f1": None, "max_rmse": 10.0},
}


def _check(open_page: Any, report: Any, screenshot: str, plots: int) -> Any:
    page = open_page()
    page.page.route(
        "**/*",
        lambda route: (
            route.abort() if not route.request.url.startswith("file://") else route.continue_()
        ),
    )
    page.page.goto(report.as_uri())
    svgs = page.page.locator(".plot svg")
    assert svgs.count() == plots
    for i in range(plots):  # each plot drawn with a real size
        box = svgs.nth(i).bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100
    assert page.page.locator("img").count() == 0  # nothing to break: all inline SVG
    assert page.errors == []
    page.screenshot(screenshot)
    return page.page


def test_a_classifier_against_its_champion(project: Project, open_page: Any) -> None:
    # given a champion and a candidate judged against it
    project.run_pipeline(project.params())
    gate(project.stage_inputs(project.params()), stale=lambda _: [])
    register(project.stage_inputs())
    promote(project.settings, {}, approver="ana")
    noisy = text_frame(20)
    noisy["score"] = noisy["score"].sample(frac=1.0, random_state=3).to_numpy()
    project.run_pipeline(project.params(gate={"min_accuracy": 0.0, "min_macro_f1": 0.0}), noisy)
    gate(
        project.stage_inputs(project.params(gate={"min_accuracy": 0.0, "min_macro_f1": 0.0})),
        stale=lambda _: [],
    )
    # when the report is written and opened
    report = html_report(project.settings, project.paths, "great")
    # then the verdict leads, both models' curves are drawn, and the failing criteria show
    page = _check(open_page, report, "report-classification.png", plots=5)
    assert "gate FAILED" in page.locator("h1").inner_text()
    assert page.locator("text=champion (AUC").count() >= 1
    assert page.locator("td.bad:has-text('FAIL')").count() >= 1


def test_a_regressor(project: Project, open_page: Any) -> None:
    frame = text_frame(20)
    frame["score"] = [float(len(text)) for text in frame["review"]]
    params = project.params(**REGRESSION)
    project.run_pipeline(
        params, frame, test_rows=frame.head(32).assign(review=lambda f: f.review + " !")
    )
    gate(project.stage_inputs(params), stale=lambda _: [])
    page = _check(
        open_page,
        html_report(project.settings, project.paths, None),
        "report-regression.png",
        plots=2,
    )
    assert "Errors on the test set" in page.content()
