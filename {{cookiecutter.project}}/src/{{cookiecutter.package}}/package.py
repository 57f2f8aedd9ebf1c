"""Stage `package`: build the bento, serve it, and check it answers like the in-process model.

BentoML reads BENTOML_HOME when first imported, so it is imported inside the functions,
after `config.use_project_stores` (or the test fixtures) pointed it at the project store.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from . import lock, release_store
from .config import PACKAGE, PROJECT, Params, Paths

SERVICE = f"{PACKAGE}.service:ModelService"
READY_TIMEOUT = 120.0
REQUIREMENTS = "requirements.txt"


def _read_json(path: Path, missing: str) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {missing}")
    return json.loads(path.read_text())


def _labels(card: dict) -> dict[str, str]:
    return {
        "model_version": str(card.get("model_version")),
        "git_commit": str(card.get("git_commit") or "unknown"),
        "data_sha256": str(card.get("data_sha256")),
        "run_id": str(card.get("run_id")),
    }


def save_model(params: Params, paths: Paths) -> str:
    """Copy booster, card and evaluation into a new version of the BentoML model."""
    import bentoml

    card = _read_json(paths.model_card, "run `make train` first")
    evaluation = _read_json(paths.evaluation_report, "run `make evaluate` first")
    if not evaluation.get("passed"):
        raise RuntimeError(
            f"{paths.evaluation_report}: the model failed its gates; not packaging it"
        )
    evaluated = evaluation.get("model_version")
    if evaluated is not None and str(evaluated) != str(card.get("model_version")):
        raise RuntimeError(
            f"{paths.evaluation_report} is for model version {evaluated}, but {paths.model_card} "
            f"is version {card.get('model_version')}: run `make evaluate` again"
        )
    metadata = {
        "max_batch_size": params.serving.max_batch_size,
        "max_body_bytes": params.serving.max_body_bytes,
        "model_name": card.get("model_name"),
        "trained_at": card.get("trained_at"),
        "metrics": evaluation.get("metrics", {}),
        # What the service records (see prediction_log.py); the drift settings stay here.
        "monitoring": params.monitoring.model_dump(
            include={"enabled", "sample_rate", "path", "max_bytes", "backups"}
        ),
    }
    with bentoml.models.create(PROJECT, labels=_labels(card), metadata=metadata) as stored:
        folder = Path(stored.path)
        shutil.copy(paths.model_file, folder / "model.txt")
        shutil.copy(paths.model_card, folder / "model.json")
        shutil.copy(paths.evaluation_report, folder / "evaluation.json")
    return str(stored.tag)


def build(
    params: Params,
    paths: Paths,
    exclude_packages: frozenset[str] = frozenset(),
    release: bool = True,
) -> dict:
    """Save the model to the store, build the bento from the package source only, export it
    to dist/ and, with `release`, publish it to the release store (else `release` later).

    `exclude_packages` leaves runtime packages out of the bento (tests build a bento with a
    missing dependency to prove the infra check catches it); never used by the pipeline.
    """
    import bentoml

    model_tag = save_model(params, paths)
    card = json.loads(paths.model_card.read_text())
    source = Path(__file__).resolve().parent
    # The lock's versions of what the service imports, and of all they pull in: the bento
    # installs exactly what `make install` put in the dev venv, wherever it is installed.
    requirements = [
        line for line in lock.export(lock.BENTO_GROUP) if lock.name_of(line) not in exclude_packages
    ]
    # BentoML imports the service to build it, and the service resolves its model at
    # import: a copy imported by an earlier build would pack that build's model.
    sys.modules.pop(SERVICE.partition(":")[0], None)
    # A clean build context: the bento gets the package, never data/, .venv/ or mlruns/.
    with tempfile.TemporaryDirectory(prefix="bento-build-") as context:
        shutil.copytree(
            source, Path(context) / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        # BentoML reads it from the context only; the bento keeps it in env/python/, not src/.
        (Path(context) / REQUIREMENTS).write_text("\n".join(requirements) + "\n")
        bento = bentoml.bentos.build(
            SERVICE,
            name=PROJECT,
            labels=_labels(card),
            description=f"{PROJECT}: model version {card.get('model_version')}",
            python={"requirements_txt": REQUIREMENTS, "lock_packages": False},
            exclude=[f"/{REQUIREMENTS}"],
            build_ctx=context,
            # Read by service.py at import: serve exactly this model version.
            args={"model_tag": model_tag},
        )
    tag = str(bento.tag)
    paths.dist.mkdir(parents=True, exist_ok=True)
    archive = paths.dist / f"{bento.tag.name}-{bento.tag.version}.bento"
    archive.unlink(missing_ok=True)
    bentoml.export_bento(tag, str(archive))
    result = {
        "tag": tag,
        "archive": str(archive),
        "model_tag": model_tag,
        "model_version": str(card["model_version"]),
        "sha256": release_store.sha256(archive),
    }
    (paths.dist / "bento.json").write_text(json.dumps(result, indent=2) + "\n")
    if release:
        publish(params, paths)
    return result


def publish(params: Params, paths: Paths) -> dict:
    """Publish the bento `make package` built last (dist/bento.json) to the release store,
    under its model version, with its held-out smoke rows. Deploys take bentos from there,
    never from dist/. CD publishes only once every check has passed on the built bento."""
    built = _read_json(paths.dist / "bento.json", "run `make package` first")
    archive = Path(built["archive"])
    if not archive.exists() or release_store.sha256(archive) != built["sha256"]:
        raise RuntimeError(
            f"{archive} is not the archive `make package` built (missing, or its sha256 "
            f"differs from dist/bento.json's): run `make package` again"
        )
    rows = held_out_rows(params, paths)
    return release_store.publish(paths, built["tag"], archive, built["model_version"], rows)


def import_archives(paths: Paths) -> list[str]:
    """Import every dist/*.bento the store lacks: a CI job gets the bento another job built
    as an archive, and serves or deploys that same bento rather than building its own."""
    import bentoml
    from bentoml.exceptions import NotFound

    archives = sorted(paths.dist.glob("*.bento"))
    if not archives:
        raise FileNotFoundError(f"no bento archive in {paths.dist}: run `make package` first")
    imported = []
    for archive in archives:
        # `make package` names the archive <name>-<version>.bento; the name has dashes too.
        tag = f"{PROJECT}:{archive.stem.removeprefix(PROJECT + '-')}"
        try:
            bentoml.bentos.get(tag)
        except NotFound:
            imported.append(str(bentoml.import_bento(str(archive)).tag))
    return imported


def latest_bento(paths: Paths) -> str:
    """The tag of the bento `make package` built last."""
    return _read_json(paths.dist / "bento.json", "run `make package` first")["tag"]


def serve_foreground(paths: Paths, bento: str | None, port: int) -> None:
    """Replace this process with `bentoml serve` (Ctrl-C stops it)."""
    from .deploy.local import serve_command

    command = serve_command(bento or latest_bento(paths), port)
    os.execv(command[0], command)


@contextlib.contextmanager
def running_server(
    paths: Paths, bento_tag: str, port: int | None = None, timeout: float = READY_TIMEOUT
) -> Iterator[str]:
    """Serve the bento on 127.0.0.1 in a subprocess; yield its base URL; always stop it."""
    from .deploy import local

    server = local.start(paths, bento_tag, port or local.free_port(), "serve", timeout=timeout)
    try:
        yield server.url
    finally:
        local.stop(server)


def held_out_rows(params: Params, paths: Paths) -> pd.DataFrame:
    """The test split: rows the model never saw in training."""
    from . import data, features

    return features.split(data.load_raw(paths), params)[1]


def to_records(frame: pd.DataFrame, names: list[str]) -> list[dict]:
    """Feature values as JSON-ready records (missing values as null)."""
    values = frame[names].astype(object)
    return values.where(values.notna(), None).to_dict(orient="records")


def _max_abs_diff(served: list, local: list) -> float:
    a, b = np.asarray(served, dtype=float), np.asarray(local, dtype=float)
    if a.shape != b.shape:
        return math.inf
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def compare(served: dict, local: dict) -> tuple[bool, float]:
    """Same keys, equal labels, probabilities (or regression values) within 1e-9."""
    if "probabilities" in local:
        diff = _max_abs_diff(served.get("probabilities", []), local["probabilities"])
        labels_equal = served.get("predictions") == local["predictions"]
    else:
        diff = _max_abs_diff(served.get("predictions", []), local["predictions"])
        labels_equal = True
    return bool(served.keys() == local.keys() and labels_equal and diff <= 1e-9), diff


def predict_over_http(client: httpx.Client, records: list[dict], batch: int) -> dict[str, list]:
    """POST records to /predict in batches of at most `batch`; concatenate the answers."""
    served: dict[str, list] = {}
    for start in range(0, len(records), batch):
        response = client.post("/predict", json={"records": records[start : start + batch]})
        if response.status_code != 200:
            raise RuntimeError(f"/predict answered {response.status_code}: {response.text}")
        for key, values in response.json().items():
            served.setdefault(key, []).extend(values)
    return served


def served_like(params: Params, url: str, model, rows: pd.DataFrame) -> dict:
    """POST `rows` to <url>/predict; compare the answers with `model` in process."""
    with httpx.Client(base_url=url.rstrip("/"), timeout=60) as client:
        records = to_records(rows, model.spec.names)
        served = predict_over_http(client, records, params.serving.max_batch_size)
        metadata = client.post("/metadata", json={})
    matches, diff = compare(served, model.predict(rows))
    serving = metadata.json().get("bento_tag") if metadata.is_success else None
    return {"matches": matches, "rows": len(rows), "max_abs_diff": diff, "serving": serving}


def smoke(params: Params, paths: Paths, url: str) -> dict:
    """The service at `url` against the model in models/ (the one just trained)."""
    from .model import Model

    url = url.rstrip("/")
    model = Model.load(paths.model_file, paths.model_card)
    found = served_like(params, url, model, held_out_rows(params, paths))
    return {
        "matches": found["matches"],
        "rows": found["rows"],
        "max_abs_diff": found["max_abs_diff"],
        "bento": found["serving"] or url,
        "url": url,
    }


def serve_and_smoke(params: Params, paths: Paths, port: int) -> dict:
    """Serve the bento `make package` built last and smoke-test it."""
    tag = latest_bento(paths)
    with running_server(paths, tag, port) as url:
        return {**smoke(params, paths, url), "bento": tag}
