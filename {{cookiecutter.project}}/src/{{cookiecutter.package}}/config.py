"""Load params.yaml and name every path a stage reads or writes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

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


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int = 42
    task: Literal["binary", "multiclass", "regression"]
    data: DataParams
    model: dict[str, object] = Field(default_factory=dict)
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    serving: ServingParams = Field(default_factory=ServingParams)


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
    os.environ["MLFLOW_TRACKING_URI"] = paths.mlflow_uri
