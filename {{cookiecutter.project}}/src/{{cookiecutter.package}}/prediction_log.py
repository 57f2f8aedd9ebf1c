"""What the service records: each prediction's inputs and outputs, as JSON lines.

Served through `bentoml.monitor` (BentoML's monitoring API: start a record, log columns
with a role and a type, stop it) with `PredictionLog`, a `MonitorBase` that writes

    <log dir>/predictions/data/data.<worker>.log     one JSON line per predicted row
    <log dir>/predictions/schema/schema.<worker>.log  the columns: name, role, type

like BentoML's DefaultMonitor, with two differences that serving needs: the files rotate
by size (DefaultMonitor rotates daily and keeps every day: unbounded), and a column is
logged in one call rather than one per value (33 calls per one-row request cost ~60 us,
more than the prediction). Imported by the service: standard library and bentoml only.
"""

from __future__ import annotations

import json
import logging
import random
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from bentoml.monitoring import MonitorBase

MONITOR_NAME = "predictions"
# Written by the log itself; a feature of the same name is logged with a trailing "_".
META_COLUMNS = ("timestamp", "request_id", "row", "model_version")
REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is reused when it is this tame (it ends up in logs and label files).
VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SCHEMA_MAX_BYTES = 1 << 20

_record: ContextVar[dict[str, list] | None] = ContextVar("prediction_record", default=None)
_request_id: ContextVar[str] = ContextVar("prediction_request_id", default="")


def column_name(feature: str) -> str:
    """The log's column for a feature: its name, with "_" added if it is a meta column."""
    return f"{feature}_" if feature in META_COLUMNS else feature


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID when it is well formed, else a new one."""
    for name, value in headers:
        if name == b"x-request-id" and VALID_REQUEST_ID.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


def _file_logger(name: str, path: Path, max_bytes: int, backups: int) -> logging.Logger:
    """A logger writing bare messages to `path`, rotated at `max_bytes`, `backups` kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, delay=True)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False  # never into BentoML's console log
    return logger


class PredictionLog(MonitorBase[Any]):
    """`bentoml.monitor(MONITOR_NAME, PredictionLog, options)`: size-rotated JSON lines."""

    PRESERVED_COLUMNS = META_COLUMNS

    def __init__(
        self,
        name: str,
        log_path: str,
        max_bytes: int,
        backups: int,
        model_version: str,
        worker: int = 0,
        **_: Any,
    ) -> None:
        super().__init__(name)
        folder = Path(log_path) / name
        self.model_version = model_version
        self.data = _file_logger(
            f"{__name__}.{name}.data", folder / "data" / f"data.{worker}.log", max_bytes, backups
        )
        self.schema = _file_logger(
            f"{__name__}.{name}.schema",
            folder / "schema" / f"schema.{worker}.log",
            SCHEMA_MAX_BYTES,
            1,
        )
        self.pending_schema: dict[str, dict[str, str]] = {}

    def start_record(self) -> None:
        _record.set({})

    def log(self, data: Any, name: str, role: str, data_type: str) -> None:
        self.log_batch([data], name, role, data_type)

    def log_batch(self, data_batch, name: str, role: str, data_type: str) -> None:
        """One column of the record, every row at once."""
        name = column_name(name)
        if self.columns_schema is None:
            self.pending_schema[name] = {"name": name, "role": role, "type": data_type}
        record = _record.get()
        if record is None:
            raise RuntimeError("log a column inside `with bentoml.monitor(...)`")
        record[name] = list(data_batch)

    def stop_record(self) -> None:
        record = _record.get()
        _record.set(None)
        if not record:
            return
        if self.columns_schema is None:
            self.columns_schema = self.pending_schema
            self.export_schema(self.columns_schema)
        self.export_data(record)

    def export_schema(self, columns_schema: dict[str, dict[str, str]]) -> None:
        meta = [{"name": "timestamp", "role": "time", "type": "datetime"}]
        meta += [
            {"name": n, "role": n, "type": "integer" if n == "row" else "string"}
            for n in META_COLUMNS[1:]
        ]
        self.schema.info(json.dumps({"columns": meta + list(columns_schema.values())}))

    def export_data(self, datas: dict[str, list]) -> None:
        """One JSON line per row; one write per request."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        meta = {"timestamp": stamp, "request_id": _request_id.get(), "row": 0}
        meta["model_version"] = self.model_version
        names = list(datas)
        lines = []
        for row, values in enumerate(zip(*datas.values(), strict=True)):
            meta["row"] = row
            lines.append(json.dumps({**meta, **dict(zip(names, values, strict=True))}))
        self.data.info("\n".join(lines))


class Recorder:
    """What the service calls per request: log (a sample of) requests through bentoml.monitor."""

    def __init__(
        self,
        spec,
        settings: dict,
        log_dir: Path,
        model_version: str,
        worker: int = 0,
        name: str = MONITOR_NAME,
    ) -> None:
        import bentoml

        self.bentoml = bentoml
        self.name = name  # bentoml.monitor keeps one monitor per name and process
        self.enabled = bool(settings.get("enabled", True))
        self.sample_rate = float(settings.get("sample_rate", 1.0))
        self.options = {
            "log_path": str(log_dir),
            "max_bytes": int(settings.get("max_bytes", 50 * 1024 * 1024)),
            "backups": int(settings.get("backups", 5)),
            "model_version": model_version,
            "worker": worker,
        }
        self.features = [
            (f.name, "categorical" if f.kind == "categorical" else "numerical")
            for f in spec.features
        ]
        self.prediction_type = "numerical" if spec.task == "regression" else "categorical"

    def record(self, rows: list[list], outputs: dict[str, list], request: str) -> None:
        """Log the request's rows and the model's outputs under `request` (its id)."""
        if not self.enabled or (self.sample_rate < 1.0 and random.random() >= self.sample_rate):
            return
        _request_id.set(request)
        columns = list(zip(*rows, strict=True))
        with self.bentoml.monitor(self.name, PredictionLog, self.options) as monitor:
            for (name, kind), values in zip(self.features, columns, strict=True):
                monitor.log_batch(values, name, "feature", kind)
            monitor.log_batch(
                outputs["predictions"], "prediction", "prediction", self.prediction_type
            )
            if "probabilities" in outputs:
                monitor.log_batch(
                    outputs["probabilities"], "probabilities", "prediction", "numerical_sequence"
                )


# One set per process: prometheus_client refuses to register a metric name twice.
_METRICS: dict[str, Any] = {}


class PredictionMetrics:
    """The prediction distribution on /metrics, next to BentoML's request metrics:
    `prediction_class_total{class=...}` for classifiers, `prediction_value` (a histogram on
    the training predictions' deciles) for regression. Create it in the worker: BentoML
    sets up prometheus_client's multiprocess mode there, after importing the service."""

    def __init__(self, spec, model_version: str, buckets: list[float] | None = None) -> None:
        from prometheus_client import Counter, Histogram

        self.regression = spec.task == "regression"
        if self.regression:
            if "value" not in _METRICS:
                _METRICS["value"] = Histogram(
                    "prediction_value",
                    "Values the model predicted",
                    ["model_version"],
                    buckets=sorted(set(buckets or [])) or Histogram.DEFAULT_BUCKETS,
                )
            self.histogram = _METRICS["value"].labels(model_version)
        else:
            if "class" not in _METRICS:
                _METRICS["class"] = Counter(
                    "prediction_class", "Predictions per class", ["model_version", "class"]
                )
            counter = _METRICS["class"]
            self.classes = {c: counter.labels(model_version, str(c)) for c in spec.classes}

    def observe(self, predictions: list) -> None:
        if self.regression:
            for value in predictions:
                self.histogram.observe(value)
        elif len(predictions) == 1:
            self.classes[predictions[0]].inc()
        else:
            for label in set(predictions):
                self.classes[label].inc(predictions.count(label))
