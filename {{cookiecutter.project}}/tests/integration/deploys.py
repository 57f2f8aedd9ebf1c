"""What the CD engine's integration modules share: environment files, bentos, the served tag."""

from __future__ import annotations

import json

import httpx

from {{ cookiecutter.package }} import package
from {{ cookiecutter.package }}.config import Paths


def environment_file(name: str, requires: str | None, port: int) -> dict:
    return {
        "name": name,
        "requires": requires,
        "promotion": "auto",
        "approval": None,
        "gates": {
            "metrics": {},
            # Far from what is measured: this scenario is about deploys, not about speed.
            "latency_p99_ms": 10_000,
            "min_rps": 0.1,
            # A quarter of a second of load is enough to see the checks run (hundreds of
            # requests): the window starts at the service's first answer, however long locust
            # takes to start on a busy machine.
            "load_test": {"users": 1, "seconds": 0.25},
        },
        "deploy": {"target": "local", "port": port},
    }


def build_from(params, root: Paths, tamper=None) -> str:
    """Another bento of the same registered model version (`root` from the `job_root`
    fixture), its card optionally tampered."""
    if tamper is not None:
        card = json.loads(root.model_card.read_text())
        tamper(card)
        root.model_card.write_text(json.dumps(card))
    return package.build(params, root)["tag"]


def reverse_feature_order(card: dict) -> None:
    # A packaging bug that validation cannot see: same fields, columns in another order.
    card["spec"]["features"] = card["spec"]["features"][::-1]


def bento_at(url: str) -> str:
    response = httpx.post(f"{url}/metadata", json={}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["bento_tag"]
