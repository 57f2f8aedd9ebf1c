"""What the service records: each prediction's inputs and outputs, as JSON lines.

Served through `bentoml.monitor` (BentoML's monitoring API: start a record, log columns
with a role and a type, stop it) with `PredictionLog`, a `MonitorBase` that writes

    <log dir>/predictions/data/data.<worker>.log     one JSON line per predicted row
    <log dir>/predictions/schema/schema.<worker>.log  the columns: name, role, type

like BentoML's DefaultMonitor, with what serving needs instead: the files rotate by size
(DefaultMonitor rotates daily and keeps every day: unbounded), and a request costs three
`log_batch` calls (its rows, as one `features` column spread into one JSON field per
feature on export; the predictions; the probabilities) and one write. One call per value
through DefaultMonitor and `logging` cost ~100 us per one-row request, more than the
prediction. Imported by the service: standard library and bentoml only.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bentoml.monitoring import MonitorBase

if TYPE_CHECKING:
    from .model_card import FeatureSpec


MONITOR_NAME = "predictions"
FEATURES = "features"  # the column holding a request's rows, in training order
# Written by the log itself; a feature of the same name is logged with a trailing "_".
META_COLUMNS = ("timestamp", "request_id", "row", "model_version")
REQUEST_ID_HEADER = "X-Request-ID"
# An incoming id is reused when it is this tame (it ends up in logs and label files).
VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SCHEMA_MAX_BYTES = 1 << 20

_record: ContextVar[dict[str, Any] | None] = ContextVar("prediction_record", default=None)
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


class RotatingLines:
    """Append lines to `path`; past `max_bytes`, shift path -> path.1 -> ... -> path.<backups>.

    What logging's RotatingFileHandler does, without a LogRecord, a lock and two stat calls
    per line, and buffered: a request's write is a copy into memory, and a thread flushes
    the buffer every FLUSH_SECONDS (and at rotation and exit). A write syscall per request
    was a tenth of the serving time of a one-row request.
    """

    FLUSH_SECONDS = 0.5

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self.lock = threading.Lock()  # rotation against the flushing thread
        self.file = open(path, "ab", buffering=1 << 16)  # noqa: SIM115 (open for its life)
        self.size = self.file.tell()
        threading.Thread(target=self._flush_often, name=f"flush {path.name}", daemon=True).start()
        atexit.register(self.flush)

    def write(self, text: str) -> None:
        data = text.encode() + b"\n"
        if self.size and self.size + len(data) > self.max_bytes:
            self.rotate()
        self.file.write(data)  # BufferedWriter: thread-safe against flush()
        self.size += len(data)

    def flush(self) -> None:
        with self.lock:
            self.file.flush()

    def _flush_often(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            self.flush()

    def rotate(self) -> None:
        with self.lock:
            self.file.close()
            for number in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{number}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
            if self.backups:
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            self.file = open(self.path, "wb", buffering=1 << 16)  # noqa: SIM115
            self.size = 0


class PredictionLog(MonitorBase[Any]):
    """`bentoml.monitor(MONITOR_NAME, PredictionLog, options)`: size-rotated JSON lines.

    `features` ([(name, "numerical" | "categorical")], training order) names the values of
    the FEATURES column; every other column is written under its own name.
    """

    PRESERVED_COLUMNS = META_COLUMNS

    def __init__(
        self,
        name: str,
        log_path: str,
        max_bytes: int,
        backups: int,
        model_version: str,
        features: list[tuple[str, str]],
        worker: int = 0,
        **_: Any,
    ) -> None:
        super().__init__(name)
        folder = Path(log_path) / name
        self.model_version = model_version
        self.features = features
        self.feature_columns = [column_name(feature) for feature, _ in features]
        self.keys = [json.dumps(column) + ": " for column in self.feature_columns]
        # A row of numbers only (no category, no missing value) is formatted in one call.
        self.numbers_only = all(kind == "numerical" for _, kind in features)
        self.numbers_format = ", ".join(key + "%r" for key in self.keys)
        self.version_text = json.dumps(str(model_version))
        self.data = RotatingLines(folder / "data" / f"data.{worker}.log", max_bytes, backups)
        self.schema = RotatingLines(folder / "schema" / f"schema.{worker}.log", SCHEMA_MAX_BYTES, 1)
        self.pending_schema: dict[str, dict[str, str]] = {}

    def start_record(self) -> None:
        _record.set({})

    def log(self, data: Any, name: str, role: str, data_type: str) -> None:
        self.log_batch([data], name, role, data_type)

    def log_batch(self, data_batch: Iterable[Any], name: str, role: str, data_type: str) -> None:
        """One column of the record, every row at once."""
        record = _record.get()
        if record is None:
            raise RuntimeError("log a column inside `with bentoml.monitor(...)`")
        if name != FEATURES:
            name = column_name(name)
        if self.columns_schema is None:
            self.pending_schema[name] = {"name": name, "role": role, "type": data_type}
        record[name] = data_batch

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
        columns = [
            {"name": column, "role": "feature", "type": kind}
            for column, (_, kind) in zip(self.feature_columns, self.features, strict=True)
        ]
        columns += [c for name, c in columns_schema.items() if name != FEATURES]
        self.schema.write(json.dumps({"columns": meta + columns}))
        self.schema.flush()

    def export_data(self, datas: dict[str, Any]) -> None:
        """One JSON line per row; one write per request.

        Lines are assembled from pre-encoded keys: numbers (finite, validated) are written
        with repr(), which is valid JSON, and everything else with json.dumps. Building a
        dict per row and encoding it took twice as long; a row of numbers goes through one
        `%` format, half the time again of a repr() per value (30 features: 10 vs 20 us).
        """
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        head = '{"timestamp": "' + stamp + '", "request_id": ' + json.dumps(_request_id.get())
        head += ', "model_version": ' + self.version_text + ', "row": '
        rows = datas.pop(FEATURES, None) or [[]] * len(next(iter(datas.values())))
        others = [(json.dumps(name) + ": ", values) for name, values in datas.items()]
        lines = []
        for row, features in enumerate(rows):
            fields = [self._features(features)] if features else []
            fields += [key + json.dumps(values[row]) for key, values in others]
            lines.append(head + str(row) + ", " + ", ".join(fields) + "}")
        self.data.write("\n".join(lines))

    def _features(self, values: list[Any]) -> str:
        """A row's feature values as JSON fields, under their columns' names."""
        if self.numbers_only and None not in values and len(values) == len(self.keys):
            return self.numbers_format % tuple(values)
        return ", ".join([key + _encode(v) for key, v in zip(self.keys, values, strict=True)])


def _encode(value: Any) -> str:
    """A feature value as JSON: numbers by repr (finite after validation), None as null."""
    if value is None:
        return "null"
    if type(value) is float or type(value) is int:
        return repr(value)
    return json.dumps(value)


class Recorder:
    """What the service calls per request: log (a sample of) requests through bentoml.monitor."""

    def __init__(
        self,
        spec: FeatureSpec,
        settings: dict[str, Any],
        log_dir: Path,
        model_version: str,
        worker: int = 0,
        name: str = MONITOR_NAME,
    ) -> None:
        import bentoml

        self.enabled = bool(settings.get("enabled", True))
        self.sample_rate = float(settings.get("sample_rate", 1.0))
        self.options = {
            "log_path": str(log_dir),
            "max_bytes": int(settings.get("max_bytes", 50 * 1024 * 1024)),
            "backups": int(settings.get("backups", 5)),
            "model_version": model_version,
            "features": [
                (f.name, "categorical" if f.kind == "categorical" else "numerical")
                for f in spec.features
            ],
            "worker": worker,
        }
        self.prediction_type = "numerical" if spec.task == "regression" else "categorical"
        # bentoml.monitor creates the monitor (one per name and process) and, per use, calls
        # start_record and stop_record around the logging. Those two calls are made here
        # directly: the context manager's dependency injection binds its signature on every
        # call (~20 us, a third of the logging).
        # BentoML's overloads leave out a monitor class, which its implementation takes.
        with bentoml.monitor(name, PredictionLog, self.options) as monitor:  # type: ignore[call-overload]
            self.monitor: PredictionLog = monitor

    def record(self, rows: list[list[Any]], outputs: dict[str, list[Any]], request: str) -> None:
        """Log the request's rows and the model's outputs under `request` (its id)."""
        if not self.enabled or (self.sample_rate < 1.0 and random.random() >= self.sample_rate):
            return
        _request_id.set(request)
        monitor = self.monitor
        monitor.start_record()
        monitor.log_batch(rows, FEATURES, "feature", "numerical_sequence")
        monitor.log_batch(outputs["predictions"], "prediction", "prediction", self.prediction_type)
        if "probabilities" in outputs:
            monitor.log_batch(
                outputs["probabilities"], "probabilities", "prediction", "numerical_sequence"
            )
        monitor.stop_record()


# One set per process: prometheus_client refuses to register a metric name twice.
_METRICS: dict[str, Any] = {}


class PredictionMetrics:
    """The prediction distribution on /metrics, next to BentoML's request metrics:
    `prediction_class_total{class=...}` for classifiers, `prediction_value` (a histogram on
    the training predictions' deciles) for regression. Create it in the worker: BentoML
    sets up prometheus_client's multiprocess mode there, after importing the service."""

    def __init__(
        self, spec: FeatureSpec, model_version: str, buckets: list[float] | None = None
    ) -> None:
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
            self.classes = {c: counter.labels(model_version, str(c)) for c in spec.class_labels}

    def observe(self, predictions: list[Any]) -> None:
        if self.regression:
            for value in predictions:
                self.histogram.observe(value)
        elif len(predictions) == 1:
            self.classes[predictions[0]].inc()
        else:
            for label in set(predictions):
                self.classes[label].inc(predictions.count(label))
