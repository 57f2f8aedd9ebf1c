"""The BentoML service: named-feature records in, the model's predictions out.

Import chain kept light on purpose (no mlflow, great_expectations or matplotlib): this
module is what the bento imports when it starts. The model (booster + card) comes from
the BentoML model store: the project store at build time, the bento's own store when
served, so the bento serves exactly the model packed into it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound
from bentoml.models import BentoModel
from starlette.responses import JSONResponse

from .config import PROJECT
from .features import FeatureSpec
from .model import Model
from .schema import records_to_frame, request_model

# Files inside the BentoML model folder (written by package.build).
MODEL_FILE = "model.txt"
CARD_FILE = "model.json"
EVALUATION_FILE = "evaluation.json"
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
PredictRequest = request_model(
    SPEC, int(_STORED.info.metadata.get("max_batch_size", DEFAULT_MAX_BATCH_SIZE))
)


@bentoml.service(traffic={"timeout": 30}, workers=1)
class ModelService:
    # A class attribute, so `bentoml build` packs this exact model version into the bento.
    bento_model = BentoModel(_STORED.tag)

    def __init__(self) -> None:
        folder = Path(self.bento_model.path)
        self.model = Model.load(folder / MODEL_FILE, folder / CARD_FILE)
        evaluation_file = folder / EVALUATION_FILE
        evaluation = json.loads(evaluation_file.read_text()) if evaluation_file.exists() else {}
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
            "metrics": evaluation.get("metrics", {}),
            "evaluation_passed": evaluation.get("passed"),
        }

    @bentoml.api(input_spec=PredictRequest)
    def predict(self, records: list) -> dict:
        """Predictions (labels or values) and, for classification, class probabilities."""
        return self.model.predict(records_to_frame(records, SPEC))

    @bentoml.api
    def metadata(self) -> dict:
        """What is serving: model, bento, commit, data fingerprint and evaluation metrics."""
        return {**self.info, "bento_tag": _bento_tag() or self.info["model_tag"]}


class JSONBodiesOnly:
    """ASGI middleware: answer 415 to a POST whose Content-Type is not JSON.

    BentoML would hand form bodies to its multipart parser, and a malformed one
    surfaces as a 500; a wrong Content-Type is the client's error.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            header = dict(scope["headers"]).get(b"content-type", b"application/json")
            media_type = header.split(b";")[0].strip().lower().decode("latin-1")
            if media_type not in ("application/json", ""):
                error = f"Content-Type must be application/json, not {media_type!r}"
                await JSONResponse({"error": error}, status_code=415)(scope, receive, send)
                return
        await self.app(scope, receive, send)


ModelService.add_asgi_middleware(JSONBodiesOnly)


def _bento_tag() -> str | None:
    """The tag of the bento being served, when served from one."""
    if tag := os.environ.get("BENTOML_BENTO_TAG"):
        return tag
    bento = getattr(ModelService, "bento", None)
    return str(bento.tag) if bento is not None else None
