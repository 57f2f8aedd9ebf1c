"""Load params.yaml and name every path a stage reads or writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

PROJECT = "{{ cookiecutter.project }}"
PACKAGE = "{{ cookiecutter.package }}"
# Error metrics are gated as maximums; every other metric as a minimum.
LOWER_IS_BETTER = frozenset({"rmse", "mae", "log_loss"})


class DataParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    target: str = "target"
    categorical: list[str] = Field(default_factory=list)
    id_columns: list[str] = Field(default_factory=list)
    test_size: float = Field(0.25, gt=0, lt=1)
    # Rows whose target is missing: "refuse" keeps them, so `make validate` fails naming the
    # column and how many; "drop" removes them at `make data`, printing how many.
    unlabelled: Literal["refuse", "drop"] = "refuse"


class EvaluationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thresholds: dict[str, float] = Field(default_factory=dict)
    regression_tolerance: float = Field(0.02, ge=0)


class ServingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(1000, gt=0)
    # Largest request body the service reads; a larger one gets 413. 4 MiB: 1000 records of 30
    # numeric features (the binary task's dataset) are ~0.8 MB of JSON, ~1 MB indented.
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)


class DriftParams(BaseModel):
    """Per-type tests of a window against the training reference (see drift.py)."""

    model_config = ConfigDict(extra="forbid")

    # ks: two-sample Kolmogorov-Smirnov p-value; psi: population stability index on the
    # reference's deciles; wasserstein: earth mover's distance in reference standard deviations.
    numeric: Literal["ks", "psi", "wasserstein"] = "ks"
    # A p-value test (ks, chi2) flags a column below this p-value, split over the window's
    # columns (Bonferroni): 0.05 = at most a 5% chance that an unshifted window is flagged.
    p_value: float = Field(0.05, gt=0, lt=1)
    psi: float = Field(0.2, gt=0)  # flagged at or above (0.1-0.25: moderate, > 0.25: major)
    wasserstein: float = Field(0.1, gt=0)  # flagged at or above, in reference std units
    # The window drifted when one column, and at least this share of its columns
    # (features and prediction), did.
    min_drifted_share: float = Field(0.0, ge=0, le=1)


class DecisionParams(BaseModel):
    """Retrain when `k` of the last `n` windows drifted and the latest did (or on labels)."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(3, ge=1)
    n: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _k_within_n(self) -> DecisionParams:
        if self.k > self.n:
            raise ValueError(f"monitoring.decision: k ({self.k}) must not exceed n ({self.n})")
        return self


class PerformanceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Fewer labelled rows in a window than this: no performance verdict.
    min_labels: int = Field(50, ge=1)
    # Labelled primary metric may trail the training-time (held-out) one by this fraction.
    tolerance: float = Field(0.05, ge=0)


class MonitoringParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    sample_rate: float = Field(1.0, ge=0, le=1)  # share of requests logged
    path: str = "monitoring"  # relative to the project root; $MONITORING_PATH overrides
    max_bytes: int = Field(50 * 1024 * 1024, gt=0)  # one log file, then it rotates
    backups: int = Field(5, ge=0)  # rotated files kept; disk use <= max_bytes * (backups + 1)
    window_rows: int = Field(500, gt=0)  # the latest rows `make monitor` compares
    # When CI monitors production (cron, UTC): the scheduled workflow / pipeline, rendered
    # by `make ci-files` when production is on a host, whose runner reads its prediction log.
    schedule: str = Field("17 5 * * *", pattern=r"^\S+( \S+){4}$")
    drift: DriftParams = Field(default_factory=DriftParams)
    decision: DecisionParams = Field(default_factory=DecisionParams)
    performance: PerformanceParams = Field(default_factory=PerformanceParams)


class RetrainingParams(BaseModel):
    """Champion against challenger (`make challenge`, challenge.py)."""

    model_config = ConfigDict(extra="forbid")

    # The challenger must beat the champion on the primary metric by this fraction of the
    # champion's score (0.01 = 1%), on the held-out split and on the labelled window.
    margin: float = Field(0.01, ge=0)
    # The labelled window of served traffic counts only with at least this many rows.
    min_labels: int = Field(50, ge=1)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    task: Literal["binary", "multiclass", "regression"]
    data: DataParams
    model: dict[str, object] = Field(default_factory=dict)
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    serving: ServingParams = Field(default_factory=ServingParams)
    monitoring: MonitoringParams = Field(default_factory=MonitoringParams)
    retraining: RetrainingParams = Field(default_factory=RetrainingParams)


def load_params(path: Path) -> Params:
    """Read and validate params.yaml; a typo in a key is an error, not a silent default."""
    with open(path, encoding="utf-8") as handle:
        return Params.model_validate(yaml.safe_load(handle))


@dataclass(frozen=True)
class Paths:
    """Every location a stage uses, relative to the project root."""

    root: Path

    @classmethod
    def discover(cls, start: Path | None = None) -> Paths:
        """The project root: $PROJECT_ROOT, else the nearest folder holding params.yaml."""
        if env := os.environ.get("PROJECT_ROOT"):
            return cls(Path(env).resolve())
        here = (start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / "params.yaml").exists():
                return cls(folder)
        raise FileNotFoundError(f"no params.yaml in {here} or any parent folder")

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def raw_data(self) -> Path:
        return self.raw_dir / "data.parquet"

    @property
    def fingerprint(self) -> Path:
        return self.raw_dir / "fingerprint.json"

    @property
    def expectations(self) -> Path:
        return self.root / "expectations"

    @property
    def suite(self) -> Path:
        return self.expectations / "raw.json"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def model_file(self) -> Path:
        return self.models / "model.txt"

    @property
    def model_card(self) -> Path:
        """Metadata that travels with the booster: features, categories, run, version."""
        return self.models / "model.json"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def validation_reports(self) -> Path:
        return self.reports / "validation"

    @property
    def predict_reports(self) -> Path:
        """Batch prediction: the validation report of the last batch and the run record."""
        return self.reports / "predict"

    @property
    def evaluation_report(self) -> Path:
        return self.reports / "evaluation.json"

    def monitoring_log(self, params: MonitoringParams, environment: str | None = None) -> Path:
        """Where the service writes its prediction log ($MONITORING_PATH wins): a folder of
        its own per local environment, the folder itself for `make serve`."""
        root = self.root / (os.environ.get("MONITORING_PATH") or params.path)
        return root / environment if environment else root

    @property
    def monitoring_reports(self) -> Path:
        return self.reports / "monitoring"

    @property
    def labelled_window(self) -> Path:
        """The latest window's labelled rows (features and target) `make monitor` scored."""
        return self.monitoring_reports / "labelled.parquet"

    @property
    def challenge_report(self) -> Path:
        return self.reports / "challenge.json"

    @property
    def feedback(self) -> Path:
        """Labels that arrived after serving, joined to the prediction log by request id."""
        return self.root / "data" / "feedback" / "labels.parquet"

    @property
    def dist(self) -> Path:
        return self.root / "dist"

    @property
    def state(self) -> Path:
        return self.root / ".state"

    @property
    def bentoml_home(self) -> Path:
        return Path(os.environ.get("BENTOML_HOME", self.root / ".bentoml"))

    @property
    def mlflow_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlruns.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlruns"


def use_project_stores(paths: Paths) -> None:
    """Point BentoML and MLflow at the project's own stores unless overridden.

    BentoML reads BENTOML_HOME when it is first imported, so call this before.
    """
    os.environ.setdefault("BENTOML_HOME", str(paths.root / ".bentoml"))
    # A bento served from here resolves a relative monitoring.path against it.
    os.environ.setdefault("PROJECT_ROOT", str(paths.root))
    os.environ["MLFLOW_TRACKING_URI"] = paths.mlflow_uri
