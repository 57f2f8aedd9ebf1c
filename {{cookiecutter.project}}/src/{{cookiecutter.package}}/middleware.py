"""ASGI middlewares of the service: JSON bodies only, and the fast path for POST /predict.

Both sit inside BentoML's own middlewares (metrics, tracing, access log, timeout, request
limits), so everything BentoML observes and enforces still applies to every request.
"""

from __future__ import annotations

import logging

import bentoml
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse, Response

logger = logging.getLogger("bentoml.serve")


def validation_error_body(error: ValidationError) -> dict:
    """BentoML's 400 body: a summary, then one entry per problem with its `loc` path."""
    return {
        "error": f"{error.error_count()} validation error for {error.title}",
        "detail": error.errors(include_context=False, include_input=False, include_url=False),
    }


class JSONBodiesOnly:
    """Answer 415 to a POST whose Content-Type is not JSON.

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


class PredictFastPath:
    """Answer POST `path` directly: the same schema, model call and error body as the
    `predict` API, without BentoML's generic per-call dispatch.

    That dispatch (a signature inspection and function wrapper per call, IO descriptors,
    request context objects, a thread hop) cost more CPU than validating and predicting
    a record together; see "Serving" in the README for the measurements. The running
    service instance answers through its `answer(records)` method.
    """

    def __init__(self, app, request_model: type[BaseModel], path: str = "/predict") -> None:
        self.app = app
        self.request_model = request_model
        self.path = path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            # An empty body is an empty object, as for BentoML's endpoints: "records" missing.
            request = self.request_model.model_validate_json(body or b"{}")
        except ValidationError as error:
            response: Response = JSONResponse(validation_error_body(error), status_code=400)
        else:
            try:
                answer = bentoml.get_current_service().answer(request.records)
                response = Response(answer.model_dump_json(), media_type="application/json")
            except Exception:
                logger.exception("POST %s failed", self.path)
                error = "An unexpected error has occurred, please check the server log."
                response = JSONResponse({"error": error}, status_code=500)
        await response(scope, receive, send)


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
