"""Stage `package`: build the bento (model + service + pinned deps), export and release it.

BentoML reads BENTOML_HOME when first imported, so it is imported inside the functions,
after `config.use_project_stores` (or the test fixtures) pointed it at the project store.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import lock, release_store
from .config import PACKAGE, PROJECT, Params, Paths
from .evaluation_report import EvaluationReport
from .model_card import CARD_FILE, EVALUATION_FILE, MODEL_FILE
from .smoke import held_out_rows

SERVICE = f"{PACKAGE}.service:ModelService"
REQUIREMENTS = "requirements.txt"


# What the package holds but serving never imports: the CI files and their templates, the
# platform sync client, the CD engine, and the orchestration and CLI above them. The bento
# is built without them (the import contracts in pyproject.toml keep the service from
# importing them).
NOT_SERVED = (
    "cicd.py",
    "cicd_templates",
    "platforms",
    "deploy",
    "pipeline.py",
    "cli.py",
    "template_update.py",
)


def _not_served(source: Path) -> Callable[[str, list[str]], set[str]]:
    """A copytree `ignore`: caches anywhere, NOT_SERVED at the package's top level."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        left_out = {n for n in names if n == "__pycache__" or n.endswith(".pyc")}
        if Path(folder) == source:
            left_out |= set(NOT_SERVED) & set(names)
        return left_out

    return ignore


def _read_json(path: Path, missing: str) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {missing}")
    read: dict[str, Any] = json.loads(path.read_text())
    return read


def _labels(card: dict[str, Any]) -> dict[str, str]:
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
    evaluation = EvaluationReport.read(paths.evaluation_report)
    if not evaluation.passed:
        raise RuntimeError(
            f"{paths.evaluation_report}: the model failed its gates; not packaging it"
        )
    if evaluation.model_version != str(card.get("model_version")):
        raise RuntimeError(
            f"{paths.evaluation_report} is for model version {evaluation.model_version}, "
            f"but {paths.model_card} "
            f"is version {card.get('model_version')}: run `make evaluate` again"
        )
    metadata = {
        "max_batch_size": params.serving.max_batch_size,
        "max_body_bytes": params.serving.max_body_bytes,
        "model_name": card.get("model_name"),
        "trained_at": card.get("trained_at"),
        "metrics": evaluation.metrics,
        # What the service records (see prediction_log.py); the drift settings stay here.
        "monitoring": params.monitoring.model_dump(
            include={"enabled", "sample_rate", "path", "max_bytes", "backups"}
        ),
    }
    with bentoml.models.create(PROJECT, labels=_labels(card), metadata=metadata) as stored:
        folder = Path(stored.path)
        shutil.copy(paths.model_file, folder / MODEL_FILE)
        shutil.copy(paths.model_card, folder / CARD_FILE)
        shutil.copy(paths.evaluation_report, folder / EVALUATION_FILE)
    return str(stored.tag)


def build(
    params: Params,
    paths: Paths,
    exclude_packages: frozenset[str] = frozenset(),
    release: bool = True,
) -> dict[str, Any]:
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
        shutil.copytree(source, Path(context) / PACKAGE, ignore=_not_served(source))
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


def publish(params: Params, paths: Paths) -> dict[str, Any]:
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
    tag: str = _read_json(paths.dist / "bento.json", "run `make package` first")["tag"]
    return tag


def bento_labels(paths: Paths, tag: str) -> dict[str, Any]:
    """The bento's tag and labels (model version, git commit) from the project store."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bento = bentoml.get(tag)
    except NotFound:
        raise ValueError(
            f"no bento {tag!r} in the bento store {paths.bentoml_home}: run `make package`"
        ) from None
    return {"bento": str(bento.tag), **bento.info.labels}
