"""Locust user for `loadtest`: POSTs one held-out record to /predict, again and again.

The record arrives as JSON in $LOADTEST_RECORD, so this file needs nothing from the project.
"""

import json
import os

from locust import FastHttpUser, constant, task

RECORD = json.loads(os.environ.get("LOADTEST_RECORD", "{}"))


class PredictUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def predict(self) -> None:
        self.client.post("/predict", json={"records": [RECORD]})
