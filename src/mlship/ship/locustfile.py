"""Locust users for `mlship loadtest`: realistic requests built from the test split.

MLSHIP_LOADTEST_ROWS names a JSON file of feature rows (written by `mlship loadtest`);
MLSHIP_API_TOKEN, when set, is sent as a bearer token. Nine requests in ten carry one row,
one carries ten, as clients of a scoring API tend to.
"""

import json
import os
import random
from pathlib import Path

from locust import FastHttpUser, between, task

ROWS = json.loads(Path(os.environ["MLSHIP_LOADTEST_ROWS"]).read_text(encoding="utf-8"))
TOKEN = os.environ.get("MLSHIP_API_TOKEN")
HEADERS = {"Authorization": f"Bearer {TOKEN}"} if TOKEN else {}


class ScoringClient(FastHttpUser):
    wait_time = between(0.0, 0.01)

    @task(9)
    def one_row(self) -> None:
        self.client.post(
            "/predict", json=random.choice(ROWS), headers=HEADERS, name="/predict 1 row"
        )

    @task(1)
    def ten_rows(self) -> None:
        self.client.post(
            "/predict",
            json=random.sample(ROWS, min(10, len(ROWS))),
            headers=HEADERS,
            name="/predict 10 rows",
        )
