#!/usr/bin/env python3
"""Packages a benchmark model as an MLflow pyfunc, for `mlflow models serve`.

    .venv/bin/python bench/mlflow_pyfunc.py MODEL_DIR [--out DIR] [--force]

Reads the MLflow ONNX model directory MODEL_DIR (model.onnx, tokenizer.json, labels from
MLmodel), and saves with `mlflow.pyfunc.save_model` a pyfunc whose python_model is
bench/pyfunc_model.py (model from code; tokenizers + onnxruntime) and whose artifacts are the
ONNX file and tokenizer.json. Default output: bench/.cache/pyfunc/<name>-<digest>/. Prints the
output directory. Serve it with:

    .venv/bin/mlflow models serve -m DIR --env-manager local -p PORT --host 127.0.0.1

and call it with `POST /invocations` `{"dataframe_split": {"columns": ["text"], "data": [["..."]]}}`
or `{"inputs": ["..."]}`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from textclf import find_labels, find_onnx, find_tokenizer, read_mlmodel  # noqa: E402


def log(msg: str) -> None:
    print(f"mlflow_pyfunc: {msg}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--out")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()

    src = Path(args.model_dir).resolve()
    mlmodel = read_mlmodel(src)
    meta = mlmodel.get("metadata") or {}
    onnx_path = find_onnx(src, mlmodel)
    tok_path = find_tokenizer(src, mlmodel)

    import onnx

    header = onnx.load(str(onnx_path), load_external_data=False)
    external = any(
        init.data_location == onnx.TensorProto.EXTERNAL for init in header.graph.initializer
    )
    out_dims = header.graph.output[0].type.tensor_type.shape.dim
    num_labels = out_dims[-1].dim_value if out_dims and out_dims[-1].dim_value else None
    labels = find_labels(src, mlmodel, num_labels)
    config = {"labels": labels}
    if meta.get("max_sequence_length"):
        config["max_sequence_length"] = int(meta["max_sequence_length"])

    h = hashlib.sha256()
    for p in [Path(__file__), HERE / "pyfunc_model.py", tok_path] + sorted(onnx_path.parent.glob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    h.update(json.dumps(config, sort_keys=True).encode())
    digest = h.hexdigest()
    out = Path(args.out).resolve() if args.out else HERE / ".cache" / "pyfunc" / f"{src.name}-{digest[:12]}"
    stamp = out / ".build-stamp"
    if not args.force and stamp.is_file() and stamp.read_text().strip() == digest:
        log(f"{out} is up to date")
        print(out)
        return 0

    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out.parent))
    try:
        onnx_artifact = onnx_path
        if external:  # one self-contained file for the artifact
            onnx_artifact = staging / "model.onnx"
            onnx.save(onnx.load(str(onnx_path)), str(onnx_artifact))
        target = staging / "model"
        mlflow.pyfunc.save_model(
            path=str(target),
            python_model=str(HERE / "pyfunc_model.py"),
            artifacts={"onnx_model": str(onnx_artifact), "tokenizer": str(tok_path)},
            model_config=config,
            signature=ModelSignature(
                inputs=Schema([ColSpec("string", "text")]),
                # MLServer's MLflow runtime reads its output metadata from here.
                outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]),
            ),
            input_example=pd.DataFrame({"text": ["This product works exactly as described."]}),
        )
        (target / ".build-stamp").write_text(digest + "\n")
        if out.exists():
            out.rename(staging / "old")
        target.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"wrote {out} (labels {labels})")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
