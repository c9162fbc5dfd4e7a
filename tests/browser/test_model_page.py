"""The server's model page in a real browser: it names the model, and its form returns a
prediction; behind the bearer token when one is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlship.artifacts import save_model
from mlship.train import fit
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


def test_the_page_is_behind_the_token(model_dir: Path, open_page: Any) -> None:
    with running_server("--model", str(model_dir), env={"MLSHIP_API_TOKEN": TOKEN}) as url:
        refused = open_page()
        assert refused.page.goto(f"{url}/").status == 401
        # given the page itself fetched with the token, the form sends the one typed into it
        page = open_page()
        page.page.route(f"{url}/", lambda route: route.continue_(
            headers={**route.request.headers, "authorization": f"Bearer {TOKEN}"}))  # fmt: skip
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
