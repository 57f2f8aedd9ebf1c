"""The BentoML service: named-feature records in, the model's predictions out.

Import chain kept light on purpose (no mlflow, great_expectations or matplotlib): this
module is what the bento imports when it starts. `bentoml serve` imports it twice: in its
arbiter process, only for the service's definition, and in the worker that predicts. So
the model's library (LightGBM) loads in the worker alone, in
`ModelService.__init__`, and a server is ready sooner (docs/serving.md). The model
(booster + card) comes from the BentoML model store: the project store at build time, the
bento's own store when served, so the bento serves exactly the model packed into it.
"""

from __future__ import annotations

import gc
import importlib.abc
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound
from bentoml.models import BentoModel
from pydantic import BaseModel

from .config import PROJECT, ServingParams
from .evaluation_report import EvaluationReport
from .middleware import JSONBodiesOnly, PredictFastPath
from .model_card import CARD_FILE, EVALUATION_FILE, FeatureSpec
from .prediction_log import PredictionMetrics, Recorder
from .schema import records_to_rows, request_model, response_model

DEFAULT_MAX_BATCH_SIZE = 1000


def _stored_model() -> bentoml.Model:
    """The model version the bento was built with (a build argument), else the latest."""
    tag = getattr(bentoml.use_arguments(), "model_tag", None) or f"{PROJECT}:latest"
    try:
        return bentoml.models.get(tag)
    except NotFound as error:
        raise RuntimeError(
            f"no model {tag!r} in the BentoML store: run `make package` "
            "(it saves the trained model to the store and builds the bento)"
        ) from error


# Resolved at import: the request schema depends on the model's features.
_STORED = _stored_model()
_CARD = json.loads(Path(_STORED.path_of(CARD_FILE)).read_text())
SPEC = FeatureSpec.model_validate(_CARD["spec"])


def _saved(key: str, default: Any) -> Any:
    """A setting `make package` saved in the model's metadata (a JSON value), or `default`."""
    return _STORED.info.metadata.get(key, default)


PredictRequest = request_model(SPEC, int(_saved("max_batch_size", DEFAULT_MAX_BATCH_SIZE)))
PredictResponse = response_model(SPEC)
# Saved with the model like max_batch_size; a model saved without it gets params' default.
MAX_BODY_BYTES = int(_saved("max_body_bytes", ServingParams().max_body_bytes))


# Tuned with the template's `make bench` (see docs/serving.md):
# - tracing: with no exporter configured BentoML samples nothing, yet its OpenTelemetry
#   middleware builds a span per request, ~0.6 ms, more than validating and predicting.
#   /predict is excluded; configure an exporter and drop the exclusion to trace it.
# - access log: a formatted line per request cost ~0.15 ms and 10-20% of throughput;
#   /metrics counts every request by endpoint and status, with latency histograms, and
#   server errors are still logged. Turn it on with logging={"access": {"enabled": True}}.
@bentoml.service(
    traffic={"timeout": 30},
    workers=1,
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/predict"]},
)
class ModelService:
    # A class attribute, so `bentoml build` packs this exact model version into the bento.
    bento_model = BentoModel(_STORED.tag)

    def __init__(self) -> None:
        # The bento's own environment has no scikit-learn or pandas (pyproject's `bento`
        # group): the serving path needs neither. A project venv has both, and LightGBM
        # imports them whenever it can: ~1.5 s of every start of a local server. The worker
        # goes without them, as it does where the bento is deployed.
        _unimportable("sklearn", "pandas")
        from .model import Model  # LightGBM: the worker's, not the arbiter's

        folder = Path(self.bento_model.path)
        self.model = Model.load_packaged(folder)
        evaluation_file = folder / EVALUATION_FILE
        evaluation = EvaluationReport.read(evaluation_file) if evaluation_file.exists() else None
        self.info = {
            "model_name": _CARD.get("model_name", PROJECT),
            "model_version": str(_CARD.get("model_version")),
            "model_tag": str(self.bento_model.tag),
            "run_id": _CARD.get("run_id"),
            "git_commit": _CARD.get("git_commit"),
            "data_sha256": _CARD.get("data_sha256"),
            "trained_at": _CARD.get("trained_at"),
            "task": SPEC.task,
            "features": SPEC.names,
            "classes": SPEC.classes,
            "metrics": evaluation.metrics if evaluation else {},
            "evaluation_passed": evaluation.passed if evaluation else None,
        }
        self.recorder, self.metrics = _monitoring(self.info["model_version"])
        # Everything loaded so far (BentoML, LightGBM, pydantic: ~1M objects) lives as long
        # as the server. Frozen, full garbage collections stop rescanning it: they were
        # the periodic 150-200 ms stalls in p99 at a single connection.
        gc.freeze()

    def answer(self, records: list[BaseModel], request_id: str) -> BaseModel:
        """The model's answer to validated records (PredictFastPath serves it over HTTP),
        logged under `request_id` and counted on /metrics when monitoring is enabled."""
        rows = records_to_rows(records, SPEC)
        outputs = self.model.predict_rows(rows)
        if self.recorder is not None and self.metrics is not None:
            self.metrics.observe(outputs["predictions"])
            self.recorder.record(rows, outputs, request_id)
        return PredictResponse.model_construct(None, **outputs)

    # Declared for the OpenAPI schema, BentoML's clients and in-process calls; over HTTP,
    # PredictFastPath answers POST /predict first, with this same schema and answer.
    # The schema is PredictRequest and PredictResponse, models built at run time from the
    # spec; BentoML's SDK has no type information, so its decorator leaves `predict` untyped.
    @bentoml.api(input_spec=PredictRequest, output_spec=PredictResponse)  # type: ignore[untyped-decorator]
    async def predict(self, records: list[BaseModel]) -> BaseModel:
        """Predictions (labels or values) and, for classification, class probabilities."""
        return self.answer(records, uuid.uuid4().hex)

    @bentoml.api  # type: ignore[untyped-decorator]
    def metadata(self) -> dict[str, Any]:
        """What is serving: model, bento, commit, data fingerprint and evaluation metrics."""
        return {**self.info, "bento_tag": _bento_tag() or self.info["model_tag"]}


# Added first, so it is the outer of the two: a wrong Content-Type never reaches the fast path.
# Both refuse bodies over MAX_BODY_BYTES: the first guards every POST, BentoML's included.
# (@bentoml.service made ModelService a bentoml.Service; mypy keeps the class's own type.)
ModelService.add_asgi_middleware(JSONBodiesOnly, max_body_bytes=MAX_BODY_BYTES)  # type: ignore[attr-defined]
ModelService.add_asgi_middleware(  # type: ignore[attr-defined]
    PredictFastPath, request_model=PredictRequest, max_body_bytes=MAX_BODY_BYTES, path="/predict"
)


class _Unimportable(importlib.abc.MetaPathFinder):
    """Imports of these packages fail as if they were not installed. Not None in
    sys.modules, which also blocks an import: BentoML's type checks read that entry."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


def _unimportable(*names: str) -> None:
    """Make packages this process has not imported yet unimportable (those it has, say a
    test's process, are left alone)."""
    if missing := {name for name in names if name not in sys.modules}:
        sys.meta_path.insert(0, _Unimportable(missing))


def _monitoring(model_version: str) -> tuple[Recorder | None, PredictionMetrics | None]:
    """The prediction log and metrics, per params.yaml's `monitoring` saved with the model.

    The log folder is $MONITORING_PATH, else monitoring.path; a relative one is taken from
    $PROJECT_ROOT (the project's commands set it), else from the server's working folder.
    MONITORING_ENABLED=false turns both off where a bento runs, without building it again.
    """
    settings = dict(_saved("monitoring", None) or {})
    switch = os.environ.get("MONITORING_ENABLED", "").strip().lower()
    if switch in {"0", "false", "no", "off"}:
        settings["enabled"] = False
    if not settings.get("enabled", True):
        return None, None
    folder = Path(os.environ.get("MONITORING_PATH") or settings.get("path") or "monitoring")
    if not folder.is_absolute():
        folder = Path(os.environ.get("PROJECT_ROOT", ".")) / folder
    worker = bentoml.server_context.worker_index or 0  # one log file per worker process
    recorder = Recorder(SPEC, settings, folder.resolve(), model_version, worker)
    metrics = PredictionMetrics(SPEC, model_version, _CARD.get("prediction_deciles"))
    return recorder, metrics


def _bento_tag() -> str | None:
    """The tag of the bento being served, when served from one."""
    if tag := os.environ.get("BENTOML_BENTO_TAG"):
        return tag
    bento = getattr(ModelService, "bento", None)
    return str(bento.tag) if bento is not None else None
