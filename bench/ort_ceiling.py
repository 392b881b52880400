#!/usr/bin/env python3
"""The engine's own ceiling: in-process ONNX Runtime on the same model, no HTTP, no queue.

    .venv/bin/python bench/ort_ceiling.py MODEL_DIR [--seconds 3] [--batch-sizes 1,8,16,32,64]
                                         [--threads N] [--json FILE]

Short review sentences (bench/data/*.tsv) are tokenized once up front with the model's own
tokenizer; each batch is padded to its longest member (unless the tokenizer pads to a fixed
length), exactly what a batching server feeds the session. For each batch size the session
runs back to back for a bounded time; texts/s = texts processed / wall time.

Two layouts of the same cores are measured, and the best of all is the ceiling: one session
with intra_op_num_threads = nproc, and nproc sessions with one thread each, run in parallel
from Python threads (ONNX Runtime releases the GIL while it computes). Override the core count
with --threads.

Prints one line per batch size and the best, and optionally writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from textclf import TextClassifier, read_tsv  # noqa: E402


def sentences() -> list[str]:
    texts = []
    for name in ("heldout.tsv", "train.tsv"):
        texts += [t for _, t in read_tsv(HERE / "data" / name)]
    return texts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured time per batch size")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured time per batch size")
    ap.add_argument("--batch-sizes", default="1,8,16,32,64")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra_op_num_threads")
    ap.add_argument("--json", help="write the results to this file")
    args = ap.parse_args()

    import onnxruntime as ort

    def classifier(threads: int) -> TextClassifier:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return TextClassifier(args.model_dir, session_options=so)

    layouts = [(1, args.threads)] + ([(args.threads, 1)] if args.threads > 1 else [])
    clf = classifier(args.threads)
    texts = sentences()
    lengths = [sum(e.attention_mask) for e in clf.tokenizer.encode_batch(texts)]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    print(
        f"ort_ceiling: {args.model_dir}: onnxruntime {ort.__version__}, intra_op_num_threads={args.threads}, "
        f"{len(texts)} sentences, {np.mean(lengths):.1f} tokens on average (max {max(lengths)})",
        flush=True,
    )

    import threading

    results = []
    for sessions, threads in layouts:
        clfs = [clf] if (sessions, threads) == (1, args.threads) else [classifier(threads) for _ in range(sessions)]
        for bs in batch_sizes:
            # Pre-tokenize every batch of this size (cycling through the sentences).
            feeds = []
            for start in range(0, len(texts), bs):
                chunk = [texts[(start + i) % len(texts)] for i in range(bs)]
                feeds.append(clf.feed(clf.encode(chunk)))
            counts = [0] * sessions

            def drive(k: int, seconds: float, count: bool) -> None:
                deadline = time.perf_counter() + seconds
                i = k
                while time.perf_counter() < deadline:
                    clfs[k].run_feed(feeds[i % len(feeds)])
                    i += 1
                    if count:
                        counts[k] += 1

            for measured, seconds in ((False, args.warmup), (True, args.seconds)):
                workers = [threading.Thread(target=drive, args=(k, seconds, measured)) for k in range(sessions)]
                t0 = time.perf_counter()
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                elapsed = time.perf_counter() - t0
            calls = sum(counts)
            tps = calls * bs / elapsed
            layout = f"{sessions}x{threads}"
            results.append({"layout": layout, "batch_size": bs, "texts_per_s": tps,
                            "ms_per_batch": 1000 * elapsed * sessions / max(calls, 1)})
            print(f"sessions x threads {layout}, batch {bs:>3}: {tps:8.1f} texts/s  "
                  f"({1000 * elapsed * sessions / max(calls, 1):7.2f} ms per batch)", flush=True)

    best = max(results, key=lambda r: r["texts_per_s"])
    print(f"best: {best['texts_per_s']:.1f} texts/s at batch {best['batch_size']} ({best['layout']} sessions x threads)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model_dir": str(args.model_dir), "threads": args.threads,
                       "onnxruntime": ort.__version__, "results": results, "best": best}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
