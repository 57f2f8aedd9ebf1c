"""ASGI middlewares of the service: JSON bodies only, and the fast path for POST /predict.

Both sit inside BentoML's own middlewares (metrics, tracing, access log, timeout, request
limits), so everything BentoML observes and enforces still applies to every request.
Both refuse a body over `max_body_bytes` with 413: BentoML itself reads bodies whole.
"""

from __future__ import annotations

import logging
from typing import Any

import bentoml
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import prediction_log

logger = logging.getLogger("bentoml.serve")


def validation_error_body(error: ValidationError) -> dict[str, Any]:
    """BentoML's 400 body: a summary, then one entry per problem with its `loc` path."""
    return {
        "error": f"{error.error_count()} validation error for {error.title}",
        "detail": error.errors(include_context=False, include_input=False, include_url=False),
    }


def too_large(limit: int) -> JSONResponse:
    """413, naming the limit and the setting behind it."""
    error = f"request body is larger than {limit} bytes (serving.max_body_bytes)"
    return JSONResponse({"error": error}, status_code=413)


class JSONBodiesOnly:
    """Answer 415 to a POST whose Content-Type is not JSON, 413 to one over `max_body_bytes`.

    BentoML would hand form bodies to its multipart parser, and a malformed one
    surfaces as a 500; a wrong Content-Type is the client's error. The size is checked
    on the declared Content-Length (the server delivers no more than that); a chunked
    body, which declares none, is read here, counting, up to the limit.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            header = headers.get(b"content-type", b"application/json")
            media_type = header.split(b";")[0].strip().lower().decode("latin-1")
            if media_type not in ("application/json", ""):
                error = f"Content-Type must be application/json, not {media_type!r}"
                await JSONResponse({"error": error}, status_code=415)(scope, receive, send)
                return
            declared = headers.get(b"content-length")
            if declared is None:  # chunked: rare, so buffered here and replayed
                body = await _read_body(receive, self.max_body_bytes)
                if body is None:
                    await too_large(self.max_body_bytes)(scope, receive, send)
                    return
                receive = _replay(body, receive)
            elif int(declared) > self.max_body_bytes:  # refused before reading a byte
                await too_large(self.max_body_bytes)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class PredictFastPath:
    """Answer POST `path` directly: the same schema, model call and error body as the
    `predict` API, without BentoML's generic per-call dispatch.

    That dispatch (a signature inspection and function wrapper per call, IO descriptors,
    request context objects, a thread hop) cost more CPU than validating and predicting
    a record together; see docs/serving.md for the measurements. The running
    service instance answers through its `answer(records, request_id)` method: the id is
    the caller's X-Request-ID when well formed, else a new one, and every answer returns
    it in that header. A body over `max_body_bytes` gets 413, counted while reading: this
    holds without JSONBodiesOnly.
    """

    def __init__(
        self,
        app: ASGIApp,
        request_model: type[BaseModel],
        max_body_bytes: int,
        path: str = "/predict",
    ) -> None:
        self.app = app
        self.request_model = request_model
        self.max_body_bytes = max_body_bytes
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        request_id = prediction_log.request_id(scope["headers"])
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            await too_large(self.max_body_bytes)(scope, receive, send)
            return
        try:
            # An empty body is an empty object, as for BentoML's endpoints: "records" missing.
            request = self.request_model.model_validate_json(body or b"{}")
        except ValidationError as error:
            response: Response = JSONResponse(validation_error_body(error), status_code=400)
        else:
            try:
                # request_model is built at run time (schema.request_model): it has `records`.
                records = request.records  # type: ignore[attr-defined]
                answer = bentoml.get_current_service().answer(records, request_id)
                response = Response(answer.model_dump_json(), media_type="application/json")
            except Exception:
                logger.exception("POST %s failed", self.path)
                message = "An unexpected error has occurred, please check the server log."
                response = JSONResponse({"error": message}, status_code=500)
        # Returned on every answer, so a client can quote it and late labels can be joined.
        response.headers[prediction_log.REQUEST_ID_HEADER] = request_id
        await response(scope, receive, send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body; None as soon as it passes `limit` bytes, leaving the rest unread."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands over `body` (already read) once, then defers to the server's."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
