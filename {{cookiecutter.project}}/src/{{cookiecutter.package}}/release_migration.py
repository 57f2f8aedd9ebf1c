"""Move the release store to a tracking server: a team that started on a laptop keeps its history.

Copies, from the project's store (`mlruns.db` and `mlruns/`) to the server: every version
of the registered model `<project>`, oldest first, with its training run (params, metrics,
tags and artifacts: the feature spec, the bentos and their smoke rows), its logged model
and its tags (bento digests, `deploy.<env>.*`); every deploy record (a run of
`<project>-deployments`); and every alias. The server numbers versions and gives runs
ids of its own, so a record's `model_version` and a version's `deploy.<env>.deploy_run` are
remapped to the copies. A server that already has versions of the model is refused: two
histories are never merged, and running the migration again cannot duplicate one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import LoggedModelStatus, Metric, Param, Run, RunStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import Model
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from . import registry
from .config import PROJECT, Paths
from .deploy import records

# MLflow takes at most 100 params in one log_batch call (and 1000 metrics).
BATCH = 100
MODEL = f"name = '{PROJECT}'"


def migrate(paths: Paths, target_uri: str, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Copy the project's release store to the server at `target_uri`: what it mapped to what."""
    if not registry.is_server(target_uri):
        raise ValueError(
            f"the migration target must be an MLflow tracking server (http://, https:// or "
            f"databricks), not {target_uri!r}: a file store is what it moves away from"
        )
    # The client would print a link to every run it copies.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    copy = _Copy(paths, registry.client(paths), MlflowClient(target_uri, target_uri))
    found = copy.versions_to_copy(target_uri)
    experiment = copy.experiment(PROJECT)
    versions = {}  # old version -> new version
    for version in found:
        old = str(version.version)  # an int when searched, a str elsewhere
        versions[old] = copy.version(version, experiment)
        echo(f"model version {old} -> {versions[old]}")
    deploys = copy.deploy_records(versions)
    echo(f"deploy records: {len(deploys)}")
    for version in found:
        for key, run_id in version.tags.items():
            if key.startswith("deploy.") and key.endswith(".deploy_run") and run_id in deploys:
                copy.target.set_model_version_tag(
                    PROJECT, versions[str(version.version)], key, deploys[run_id]
                )
    aliases = {}
    for alias, old in copy.source.get_registered_model(PROJECT).aliases.items():
        aliases[alias] = versions[str(old)]
        copy.target.set_registered_model_alias(PROJECT, alias, aliases[alias])
        echo(f"alias {alias} -> version {aliases[alias]}")
    return {"versions": versions, "aliases": aliases, "deploy_records": deploys}


@dataclass
class _Copy:
    """Both stores, and the runs and logged models copied so far (old id -> new id)."""

    paths: Paths
    source: MlflowClient
    target: MlflowClient
    runs: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    def versions_to_copy(self, uri: str) -> list[ModelVersion]:
        """The source's model versions, oldest first, once the target is known to have none."""
        if self.target.search_model_versions(MODEL, max_results=1):
            raise ValueError(
                f"{uri} already has versions of {PROJECT}: the migration never merges two "
                "release stores (nor repeats itself), so nothing was copied"
            )
        found = sorted(self.source.search_model_versions(MODEL), key=lambda v: int(v.version))
        if not found:
            raise ValueError(f"nothing to migrate: {self.paths.mlflow_uri} has no {PROJECT}")
        if not self.target.search_registered_models(MODEL):
            model = self.source.get_registered_model(PROJECT)
            self.target.create_registered_model(PROJECT, model.tags, model.description)
        return found

    def experiment(self, name: str) -> str:
        """The target's experiment `name`, created in the server's own artifact store."""
        found = self.target.get_experiment_by_name(name)
        return found.experiment_id if found else self.target.create_experiment(name)

    def download(self, uri: str, experiment: str, folder: str) -> str:
        """The source's artifacts below `uri` (found where the store is now), in `folder`."""
        root = self.source.get_experiment(experiment).artifact_location
        found = registry.relocated(self.paths, uri, root)
        return mlflow.artifacts.download_artifacts(artifact_uri=found, dst_path=folder)

    def run(self, run: Run, experiment: str, tags: dict[str, Any] | None = None) -> str:
        """A copy of `run` in `experiment`: tags (`tags` win), params, metrics, times, status."""
        tags = {**run.data.tags, **(tags or {})}
        run_id: str = self.target.create_run(experiment, run.info.start_time, tags).info.run_id
        params = [Param(key, value) for key, value in run.data.params.items()]
        metrics = [
            Metric(point.key, point.value, point.timestamp, point.step)
            for key in run.data.metrics
            for point in self.source.get_metric_history(run.info.run_id, key)
        ]
        self.log(run_id, params, metrics)
        if run.info.status != RunStatus.to_string(RunStatus.RUNNING):
            self.target.set_terminated(run_id, run.info.status, run.info.end_time)
        self.runs[run.info.run_id] = run_id
        return run_id

    def log(
        self, run_id: str, params: list[Param] | None = None, metrics: list[Metric] | None = None
    ) -> None:
        """Log params and metrics to a target run, in batches MLflow accepts."""
        params, metrics = params or [], metrics or []
        for start in range(0, max(len(params), len(metrics)), BATCH):
            end = start + BATCH
            self.target.log_batch(run_id, metrics=metrics[start:end], params=params[start:end])

    def training_run(self, run_id: str, experiment: str) -> str:
        """The copy of a version's training run with its artifacts, made once."""
        if run_id not in self.runs:
            run = self.source.get_run(run_id)
            copy = self.run(run, experiment)
            with tempfile.TemporaryDirectory(prefix="migrate-run-") as folder:
                found = self.download(run.info.artifact_uri, run.info.experiment_id, folder)
                self.target.log_artifacts(copy, found)
        return self.runs[run_id]

    def logged_model(self, model_id: str, run_id: str, experiment: str) -> str:
        """A logged model (files, tags, params, metrics) made once on the target; its id."""
        if model_id in self.models:
            return self.models[model_id]
        logged = self.source.get_logged_model(model_id)
        tags = {k: v for k, v in logged.tags.items() if k != MLFLOW_MODEL_VERSIONS}  # the server's
        new = self.target.create_logged_model(
            experiment, logged.name, run_id, tags, logged.params, logged.model_type
        )
        with tempfile.TemporaryDirectory(prefix="migrate-model-") as folder:
            files = self.download(logged.artifact_location, logged.experiment_id, folder)
            if (file := Path(files) / "MLmodel").exists():  # it names its model, run, place
                mlmodel = Model.load(file)
                mlmodel.model_id = mlmodel.model_uuid = new.model_id
                mlmodel.run_id, mlmodel.artifact_path = run_id, new.artifact_location
                mlmodel.save(file)
            self.target.log_model_artifacts(new.model_id, files)
        # The run's metrics, linked to the model again (the run keeps one copy of each).
        self.log(run_id, metrics=[
            Metric(m.key, m.value, m.timestamp, m.step, model_id=new.model_id)
            for m in logged.metrics or []
            if m.run_id is not None and self.runs.get(m.run_id) == run_id
        ])  # fmt: skip
        self.target.finalize_logged_model(new.model_id, LoggedModelStatus.READY)
        self.models[model_id] = new.model_id
        return new.model_id

    def version(self, version: ModelVersion, experiment: str) -> str:
        """The version, its run and its logged model registered anew; the new number."""
        run_id = self.training_run(registry.training_run(version), experiment)
        old_id = registry.logged_model_id(version)
        model_id = self.logged_model(old_id, run_id, experiment)
        copy = self.target.create_model_version(
            PROJECT, f"models:/{model_id}", run_id, version.tags,
            description=version.description, model_id=model_id,
        )  # fmt: skip
        return str(copy.version)

    def deploy_records(self, versions: dict[str, str]) -> dict[str, str]:
        """Every deploy attempt, oldest first, its model version remapped; old -> new id."""
        attempts = records.read(self.paths)
        experiment = self.experiment(records.EXPERIMENT) if attempts else ""
        copied = {}
        for record in attempts:
            old, run_id = record.model_version, str(record.run_id)
            tags = {"model_version": versions[old]} if old in versions else {}
            copied[run_id] = self.run(self.source.get_run(run_id), experiment, tags)
        return copied
