"""The baseline: a bare Starlette app on uvicorn calling the bento's LightGBM booster.

It does the least a prediction endpoint can do: parse the JSON body, put each record's
values in training order into a float matrix, call `booster.predict` with the service's
arguments (one OpenMP thread), and answer with the service's response shape. No
validation, metrics, logging or tracing: the ceiling the bento is measured against. Run with the baked project's Python:

    <project>/.venv/bin/python bench/bare_app.py --model-dir <bento model folder> --port 3302
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


def create_app(model_dir: Path) -> Starlette:
    booster = lgb.Booster(model_file=str(model_dir / "model.txt"))
    spec = json.loads((model_dir / "model.json").read_text())["spec"]
    names = [feature["name"] for feature in spec["features"]]
    classes = np.asarray(spec.get("classes") or [], dtype=object)
    task = spec["task"]

    async def predict(request: Request) -> JSONResponse:
        records = (await request.json())["records"]
        rows = np.array([[r[n] for n in names] for r in records], dtype=float)
        raw = booster.predict(rows, num_threads=1)
        if task == "regression":
            return JSONResponse({"predictions": raw.tolist()})
        probabilities = np.column_stack([1.0 - raw, raw]) if task == "binary" else raw
        labels = classes[probabilities.argmax(axis=1)].tolist()
        return JSONResponse({"predictions": labels, "probabilities": probabilities.tolist()})

    async def readyz(_: Request) -> PlainTextResponse:
        return PlainTextResponse("ready")

    return Starlette(
        routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", readyz)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = create_app(args.model_dir)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
