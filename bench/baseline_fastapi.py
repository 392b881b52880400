#!/usr/bin/env python3
"""The service hotserve replaces, rebuilt faithfully as the benchmark's baseline.

    .venv/bin/python bench/baseline_fastapi.py PORT [MODEL_DIR]     (MODEL_DIR defaults to $MODEL_URI)

FastAPI + uvicorn, one worker, on 127.0.0.1. As in the old service:
- `predict(text)` is synchronous (tokenizers + onnxruntime in Python, default session
  options) and runs via `await asyncio.to_thread(predict, ...)` on the default thread pool;
- `POST /predict {"text": ...}` -> `{"label", "score", "scores", "model_version"}`;
- `POST /predict/batch {"texts": [...]}` loops over the texts one by one (no real batching);
- `GET /health` -> `{"status", "model_loaded"}` (200 once the model is loaded, else 503).

One deliberate difference: uvicorn's per-request access log is off (`--access-log` turns it
on), so the baseline is not charged for log formatting.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import uvicorn  # noqa: E402
from fastapi import FastAPI, HTTPException  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from textclf import TextClassifier  # noqa: E402

app = FastAPI(title="sentiment-api (baseline)")
MODEL: TextClassifier | None = None


class PredictRequest(BaseModel):
    text: str


class BatchRequest(BaseModel):
    texts: list[str]


def predict(text: str) -> dict:
    """Synchronous, one text at a time: what the old service did."""
    assert MODEL is not None
    result = MODEL.predict([text])[0]
    result["model_version"] = MODEL.model_version
    return result


@app.get("/health")
async def health():
    if MODEL is None:
        return JSONResponse({"status": "unavailable", "model_loaded": False}, status_code=503)
    return {"status": "ok", "model_loaded": True, "model_version": MODEL.model_version}


@app.post("/predict")
async def predict_one(req: PredictRequest):
    if MODEL is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    return await asyncio.to_thread(predict, req.text)


@app.post("/predict/batch")
async def predict_batch(req: BatchRequest):
    if MODEL is None:
        raise HTTPException(status_code=503, detail="model not loaded")
    predictions = []
    for text in req.texts:
        predictions.append(await asyncio.to_thread(predict, text))
    return {"predictions": predictions, "model_version": MODEL.model_version}


def main() -> int:
    global MODEL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("model_dir", nargs="?", default=os.environ.get("MODEL_URI"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--access-log", action="store_true")
    args = ap.parse_args()
    if not args.model_dir:
        ap.error("MODEL_DIR (or $MODEL_URI) is required")
    MODEL = TextClassifier(args.model_dir)
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level="warning", access_log=args.access_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
