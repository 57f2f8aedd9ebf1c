"""The evaluation report: what `make evaluate` writes to reports/evaluation.json and packs
into the bento, and what packaging, the challenge, the deploy gates, the service's
/metadata and the CI job summary read back.

Its own module, beside the model, because the service reads it too and must not import
evaluate.py (scikit-learn, MLflow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

GateName = Literal["threshold", "baseline", "production"]


class Gate(BaseModel):
    """One gate: a metric measured against its bound."""

    model_config = ConfigDict(frozen=True)

    name: GateName
    metric: str
    measured: float | None  # None: the metric does not exist for this task
    bound: float | None  # None: production could not be scored
    passed: bool
    message: str | None  # why it failed; None when it passed
    advisory: bool = False  # reported, but `make challenge` decides (a retraining)


class Baseline(BaseModel):
    model_config = ConfigDict(frozen=True)

    strategy: str  # the dummy model: class prior or mean
    metrics: dict[str, float]


class ProductionScore(BaseModel):
    """The version aliased `production`, scored on the same held-out rows."""

    model_config = ConfigDict(frozen=True)

    version: str
    run_id: str | None
    metrics: dict[str, float] | None  # None when it cannot be compared (see `error`)
    error: str | None = None


class EvaluationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    passed: bool  # every gate that is not advisory passed
    failures: list[str]  # the failed gates' messages
    metrics: dict[str, float]
    baseline: Baseline
    production: ProductionScore | None  # None: no version is aliased `production` yet
    gates: list[Gate]
    primary_metric: str
    model_version: str
    run_id: str
    rows: int  # held-out rows scored
    plots: list[str]  # relative to the project root

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> EvaluationReport:
        """The report at `path`; a missing or malformed one is a one-line error naming it."""
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `make evaluate` first")
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(the document)"
            raise ValueError(
                f"{path} is not an evaluation report ({where}: {first['msg']}): "
                "run `make evaluate` again"
            ) from None
