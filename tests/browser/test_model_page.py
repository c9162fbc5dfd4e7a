"""The server's model page in a real browser: it names the model, and its form returns a
prediction; behind the bearer token when one is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlship.pipeline.artifacts import save_model
from mlship.pipeline.train import fit
from tests.conftest import make_params, text_frame
from tests.serving.conftest import card_for
from tests.serving.live import running_server

pytestmark = pytest.mark.browser
TOKEN = "a-long-test-token-for-the-model-page"
ANSWERED = "document.getElementById('answer').textContent.includes('label:')"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    save_model(fit(make_params(), text_frame(20)), card_for(["great", "other"]), folder)
    return folder


def test_the_form_returns_a_prediction(model_dir: Path, open_page: Any) -> None:
    with running_server("--model", str(model_dir)) as url:
        page = open_page()
        page.page.goto(f"{url}/")
        assert "mlship-model" in page.page.locator("h1").inner_text()
        assert page.page.locator("td:has-text('review')").count() == 1
        page.page.fill("#review", "great taste, would buy again")
        page.page.click("button[type=submit]")
        page.page.wait_for_function(ANSWERED, timeout=10_000)
        answer = page.page.locator("#answer").inner_text()
        assert "label: great" in answer and "confidence:" in answer
        assert page.errors == []
        page.screenshot("model-page.png")


@pytest.fixture(scope="module")
def tabular_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tabular model whose card carries an example row, with its training profile."""
    from mlship.card import PROFILE_FILE, ModelCard
    from mlship.monitor import drift
    from tests.unit.pipeline.test_train import TABULAR, tabular_frame

    folder = tmp_path_factory.mktemp("tabular")
    params = make_params(train={"model": {"kind": "gradient_boosting", "max_iter": 20}}, **TABULAR)
    frame = tabular_frame()
    card = ModelCard.model_validate(
        {
            "name": "penguins",
            "target": "species",
            "classes": ["a", "b", "c"],
            "features": {"categorical": ["island"], "numeric": ["mass"]},
            "example": {"island": "north", "mass": 29.5},
        }
    )
    model = fit(params, frame)
    save_model(model, card, folder)
    drift.profile(frame, params.data, list(model.predict(frame))).save(folder / PROFILE_FILE)
    return folder


def test_the_form_starts_from_a_real_row_and_offers_the_known_categories(
    tabular_dir: Path, open_page: Any, tmp_path: Path
) -> None:
    metrics = tmp_path / "evaluate.json"
    metrics.write_text('{"accuracy": 0.98765, "rows": 10667.0, "rmse_like": 25331.25}')
    with running_server("--model", str(tabular_dir), "--metrics", str(metrics)) as url:
        page = open_page()
        page.page.goto(f"{url}/")
        # the example row is filled in, so Predict answers at once
        assert page.page.input_value("#mass") == "29.5"
        assert page.page.input_value("#island") == "north"
        options = page.page.locator("#island-known option")
        assert sorted(options.evaluate_all("els => els.map(e => e.value)")) == ["north", "south"]
        # the evaluation is shown, each number in its own form
        shown = page.page.locator("table").first.inner_text()
        assert "0.9877" in shown and "10,667" in shown and "25,331.2" in shown
        page.page.click("button[type=submit]")
        page.page.wait_for_function(ANSWERED, timeout=10_000)
        assert "label: c" in page.page.locator("#answer").inner_text()
        assert page.errors == []
        page.screenshot("model-page-tabular.png")


def test_the_page_is_behind_the_token(model_dir: Path, open_page: Any) -> None:
    with running_server("--model", str(model_dir), env={"MLSHIP_API_TOKEN": TOKEN}) as url:
        refused = open_page()
        assert refused.page.goto(f"{url}/").status == 401
        # given the page itself fetched with the token, the form sends the one typed into it
        page = open_page()
        page.page.route(
            f"{url}/",
            lambda route: route.continue_(
                headers={**route.request.headers, "authorization": f"Bearer {TOKEN}"}
            ),
        )
        assert page.page.goto(f"{url}/").status == 200
        page.page.fill("#review", "stale and bland, awful")
        page.page.fill("#token", "wrong")
        page.page.click("button[type=submit]")
        page.page.wait_for_function(
            "document.getElementById('answer').textContent.startsWith('401')", timeout=10_000
        )
        page.page.fill("#token", TOKEN)
        page.page.click("button[type=submit]")
        page.page.wait_for_function(ANSWERED, timeout=10_000)
        assert "label: other" in page.page.locator("#answer").inner_text()
        page.screenshot("model-page-token.png")
