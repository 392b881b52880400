"""Loading and running an MLflow ONNX text-classification model directory in Python.

Shared by the Python comparison points of the benchmark (the FastAPI baseline, the MLflow
pyfunc wrapper and the ONNX Runtime ceiling) so that all of them read a model directory the
way hotserve's model contract describes it (docs: PRODUCT.md, "Model contract"):

- `MLmodel` (YAML): the `onnx` flavor's `data` names the ONNX file; `metadata.labels`,
  `metadata.tokenizer`, `metadata.max_sequence_length` are read when present;
- the tokenizer: `metadata.tokenizer`, else `tokenizer.json`, else `tokenizer/tokenizer.json`;
- labels: `metadata.labels`, else `config.json` `id2label`, else `LABEL_0..N`;
- inputs `input_ids`, `attention_mask` and `token_type_ids` when the graph has it;
- the output `[batch, num_labels]` is logits (softmaxed here) or already probabilities.

The tokenizer is used as the model ships it (its own truncation / padding settings); when it
has no padding configured, a batch is padded to its longest sequence.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import yaml

_ORT_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def read_mlmodel(model_dir: Path) -> dict:
    with open(model_dir / "MLmodel") as f:
        return yaml.safe_load(f) or {}


def find_onnx(model_dir: Path, mlmodel: dict) -> Path:
    onnx_flavor = (mlmodel.get("flavors") or {}).get("onnx") or {}
    data = onnx_flavor.get("data")
    if data:
        return model_dir / data
    candidates = sorted(model_dir.glob("*.onnx"))
    if not candidates:
        raise FileNotFoundError(f"{model_dir}: no onnx flavor data and no *.onnx file")
    return candidates[0]


def find_tokenizer(model_dir: Path, mlmodel: dict) -> Path:
    meta = mlmodel.get("metadata") or {}
    candidates = []
    if meta.get("tokenizer"):
        candidates.append(model_dir / meta["tokenizer"])
    candidates += [model_dir / "tokenizer.json", model_dir / "tokenizer" / "tokenizer.json"]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{model_dir}: no tokenizer.json (looked at {', '.join(map(str, candidates))})")


def find_labels(model_dir: Path, mlmodel: dict, num_labels: int | None) -> list[str]:
    meta = mlmodel.get("metadata") or {}
    if meta.get("labels"):
        return [str(x) for x in meta["labels"]]
    cfg = model_dir / "config.json"
    if cfg.is_file():
        id2label = json.loads(cfg.read_text()).get("id2label")
        if id2label:
            return [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
    return [f"LABEL_{i}" for i in range(num_labels or 2)]


def softmax_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    # Already probabilities (non-negative rows that sum to 1)? Keep them.
    if x.size and np.all(x >= 0) and np.allclose(x.sum(axis=-1), 1.0, atol=1e-4):
        return x
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class TextClassifier:
    """An ONNX Runtime session plus its tokenizer and labels, read from a model directory."""

    def __init__(self, model_dir: str | os.PathLike, session_options=None, providers=None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir)
        self.mlmodel = read_mlmodel(self.model_dir)
        meta = self.mlmodel.get("metadata") or {}
        self.onnx_path = find_onnx(self.model_dir, self.mlmodel)
        self.tokenizer_path = find_tokenizer(self.model_dir, self.mlmodel)
        self.session = ort.InferenceSession(
            str(self.onnx_path),
            sess_options=session_options,
            providers=providers or ["CPUExecutionProvider"],
        )
        self.tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        max_len = meta.get("max_sequence_length")
        if max_len and self.tokenizer.truncation is None:
            self.tokenizer.enable_truncation(int(max_len))
        if self.tokenizer.padding is None:
            self.tokenizer.enable_padding()  # pad a batch to its longest member
        self.inputs = {i.name: _ORT_INT_TYPES.get(i.type, np.int64) for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = "logits" if "logits" in outputs else outputs[0]
        out_shape = next(o.shape for o in self.session.get_outputs() if o.name == self.output)
        num_labels = out_shape[-1] if out_shape and isinstance(out_shape[-1], int) else None
        self.labels = find_labels(self.model_dir, self.mlmodel, num_labels)
        self.model_version = str(meta.get("version") or meta.get("model_version") or self.model_dir.name)

    def feed(self, encodings) -> dict[str, np.ndarray]:
        cols = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        return {name: np.asarray(cols[name], dtype=dt) for name, dt in self.inputs.items() if name in cols}

    def encode(self, texts: list[str]):
        return self.tokenizer.encode_batch(list(texts))

    def run_feed(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([self.output], feed)[0]

    def probabilities(self, texts: list[str]) -> np.ndarray:
        return softmax_rows(self.run_feed(self.feed(self.encode(texts))))

    def predict(self, texts: list[str]) -> list[dict]:
        out = []
        for row in self.probabilities(texts):
            best = int(np.argmax(row))
            out.append(
                {
                    "label": self.labels[best],
                    "score": float(row[best]),
                    "scores": {lab: float(p) for lab, p in zip(self.labels, row)},
                }
            )
        return out


def read_tsv(path: str | os.PathLike) -> list[tuple[str, str]]:
    """`label<TAB>text` rows with a header line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        assert header == ["label", "text"], f"{path}: unexpected header {header}"
        for line in f:
            line = line.rstrip("\n")
            if line:
                label, text = line.split("\t", 1)
                rows.append((label, text))
    return rows
