"""Locust user for `loadtest`: POSTs one held-out record to /predict, again and again.

The record arrives as JSON in $LOADTEST_RECORD, so this file needs nothing from the project.
The measured window, $LOADTEST_SECONDS long, starts at the service's first answer, not when
locust starts: on a busy host locust's own start-up and first connection can take longer
than a short window, which then measured nothing. The answered first request is the
warm-up, left out of the statistics; a first request that failed stays counted, and
`--run-time` still ends a run whose service never answers.

The window's figures are written to $LOADTEST_RESULT (JSON) as locust exits: its CSV is
refreshed once a second and not at exit, so it misses up to the last second of a run (the
whole of a window shorter than that).
"""

import json
import os
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment

RECORD = json.loads(os.environ.get("LOADTEST_RECORD", "{}"))
SECONDS = float(os.environ.get("LOADTEST_SECONDS", "5"))
RESULT = os.environ.get("LOADTEST_RESULT")
_window: dict[str, Any] = {}

# locust's add_listener is unannotated: to mypy its decorator leaves a listener untyped.


@events.init.add_listener  # type: ignore[untyped-decorator]
def _keep_environment(environment: Environment, **_kwargs: Any) -> None:
    _window["environment"] = environment


@events.request.add_listener  # type: ignore[untyped-decorator]
def _start_the_window_at_the_first_answer(
    exception: BaseException | None = None, **_kwargs: Any
) -> None:
    if "started" in _window:
        return
    _window["started"] = True
    environment = _window["environment"]
    if exception is None:
        # Spawned, so it runs after locust has logged this request: the window starts empty.
        gevent.spawn(environment.stats.reset_all)
    gevent.spawn_later(SECONDS, environment.runner.quit)


@events.quit.add_listener  # type: ignore[untyped-decorator]
def _write_the_window(**_kwargs: Any) -> None:
    """The measured window's totals, final: `quit` fires once the users have stopped."""
    if not RESULT or "environment" not in _window:
        return
    total = _window["environment"].stats.total
    figures = {
        "requests": total.num_requests,
        "errors": total.num_failures,
        "rps": total.total_rps,
        **{f"p{p}_ms": total.get_response_time_percentile(p / 100) for p in (50, 95, 99)},
    }
    Path(RESULT).write_text(json.dumps(figures))


class PredictUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def predict(self) -> None:
        self.client.post("/predict", json={"records": [RECORD]})
