#!/usr/bin/env python3
"""The engine's own ceiling: in-process ONNX Runtime on the same model, no HTTP, no queue.

    .venv/bin/python bench/ort_ceiling.py MODEL_DIR [--seconds 3] [--batch-sizes 1,8,16,32,64]
                                         [--threads N] [--mixed FILE] [--json FILE]

Short review sentences (bench/data/*.tsv) are tokenized once up front with the model's own
tokenizer; each batch is padded to its longest member (unless the tokenizer pads to a fixed
length), exactly what a batching server feeds the session. For each batch size the session
runs back to back for a bounded time; texts/s = texts processed / wall time.

Two layouts of the same cores are measured, and the best of all is the ceiling: one session
with intra_op_num_threads = nproc, and nproc sessions with one thread each, run in parallel
from Python threads (ONNX Runtime releases the GIL while it computes). Override the core count
with --threads.

Batch-1 latency (key `batch1`): one text per run, back to back for --seconds, on the same short
sentences: mean and median ms per run for one session with nproc threads (`threads_all`), one
session with one thread (`threads_one`), and, as information, one session with nproc threads
and ONNX Runtime's intra-op spinning off (`threads_all_nospin`). This is the latency a server
can approach at concurrency 1.

Mixed lengths (`--mixed FILE`, key `mixed`): the reviews of a `tokens<TAB>bucket<TAB>text` file
(bench/data/mixed.tsv, made by bench/make_mixed.py), truncated at the model's
max_sequence_length as the servers do, in batches of 32:
- `naive`: consecutive reviews in file order (the send order), each batch padded to its longest
  member; the engine's own throughput on the mix with no length-aware batching;
- `sorted` (information): the reviews sorted by length, then cut into batches of 32, which shows
  what padding costs. The batches run in a strided order (golden ratio) so that a run that stops
  after part of the file still sees short and long batches alike.
Both layouts run for --seconds each, the nproc sessions taking batches from one shared sequence
(as a server's workers share one queue); texts/s = texts in the batches run / wall time.

On a GPU (`--provider cuda`, `cuda:1`, `tensorrt`; the GPU build of ONNX Runtime, made by
`scripts/setup.sh gpu`, bench/gpu.sh): every session runs on that provider (CPU for the nodes it
does not take) with one intra-op thread, and the layouts are one session and two sessions run in
parallel (hotserve's most sessions per model on a device); batch-1 latency is one session's. The
script exits with an error if ONNX Runtime did not put the session on the provider asked for.

Prints one line per measurement and the best, and optionally writes them as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import threading
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


def read_mixed(path: str | os.PathLike) -> list[str]:
    """The texts of a `tokens<TAB>bucket<TAB>text` file (no header), in file order."""
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                texts.append(line.split("\t", 2)[2])
    return texts


def strided(n: int) -> list[int]:
    """0..n-1 in golden-ratio strides: every prefix samples the whole range evenly."""
    step = max(1, round(n * (math.sqrt(5) - 1) / 2))
    while math.gcd(step, n) != 1:
        step += 1
    return [(i * step) % n for i in range(n)]


def run_threads(target, args_list: list[tuple]) -> float:
    """Runs `target(*args)` on one thread per entry of `args_list`, all at once; wall seconds."""
    workers = [threading.Thread(target=target, args=args) for args in args_list]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


def throughput(clfs, feeds: list[dict], sizes: list[int], seconds: float, warmup: float) -> tuple[float, int]:
    """Run the feeds round-robin from one shared sequence, one Python thread per session.

    Returns (texts/s, batches run) of the measured period; warm-up and measurement both start at
    the first feed, so every layout runs the same batches.
    """
    done = [0] * len(clfs)
    calls = [0] * len(clfs)
    elapsed = 0.0
    for measured, secs in ((False, warmup), (True, seconds)):
        order = itertools.count()  # next() on it is atomic under the GIL
        deadline = time.perf_counter() + secs

        def drive(k: int) -> None:
            while time.perf_counter() < deadline:
                i = next(order) % len(feeds)
                clfs[k].run_feed(feeds[i])
                if measured:
                    done[k] += sizes[i]
                    calls[k] += 1

        elapsed = run_threads(drive, [(k,) for k in range(len(clfs))])
    return sum(done) / elapsed, sum(calls)


def latency(clf, feeds: list[dict], seconds: float, warmup: float) -> tuple[float, float]:
    """(mean, median) ms of one run, back to back, cycling through single-text feeds."""
    times = []
    for measured, secs in ((False, warmup), (True, seconds)):
        deadline = time.perf_counter() + secs
        i = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            clf.run_feed(feeds[i % len(feeds)])
            dt = time.perf_counter() - t0
            i += 1
            if measured:
                times.append(dt)
    return 1000 * float(np.mean(times)), 1000 * float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured time per batch size")
    ap.add_argument("--warmup", type=float, default=0.5, help="unmeasured time per batch size")
    ap.add_argument("--batch-sizes", default="1,8,16,32,64")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra_op_num_threads")
    ap.add_argument("--mixed", help="also measure naive and length-sorted batches of 32 of this tokens<TAB>bucket<TAB>text file")
    ap.add_argument("--mixed-seconds", type=float, default=None,
                    help="measured time per layout on the mixed file (default: --seconds, at least 10: "
                         "a naive batch of 32 long reviews takes most of a second)")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--provider", default="cpu",
                    help="cpu (default), or a GPU: cuda, cuda:N, tensorrt, tensorrt:N (the GPU build of ONNX Runtime)")
    args = ap.parse_args()
    name, _, device = args.provider.partition(":")
    device_provider = {"cpu": None, "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}.get(name, "?")
    if device_provider == "?" or (device and not device.isdigit()) or (name == "cpu" and device):
        ap.error(f"--provider {args.provider}: expected cpu, cuda, cuda:N, tensorrt or tensorrt:N")
    if device_provider:
        args.threads = 1
    if args.mixed_seconds is None:
        args.mixed_seconds = max(args.seconds, 10.0)

    import onnxruntime as ort

    def classifier(threads: int, spinning: bool = True) -> TextClassifier:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        if not spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not device_provider:
            return TextClassifier(args.model_dir, session_options=so)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [(device_provider, {"device_id": int(device or 0)}), "CPUExecutionProvider"]
        made = TextClassifier(args.model_dir, session_options=so, providers=providers)
        if made.session.get_providers()[0] != device_provider:
            sys.exit(f"ort_ceiling: onnxruntime {ort.__version__} did not start {device_provider} "
                     f"(the session runs on {made.session.get_providers()}); is this the GPU build, with a GPU?")
        return made

    if device_provider:
        layouts = [(1, 1), (2, 1)]
    else:
        layouts = [(1, args.threads)] + ([(args.threads, 1)] if args.threads > 1 else [])
    clf = classifier(args.threads)
    texts = sentences()
    lengths = [sum(e.attention_mask) for e in clf.tokenizer.encode_batch(texts)]
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    print(
        f"ort_ceiling: {args.model_dir}: onnxruntime {ort.__version__} on {args.provider}, intra_op_num_threads={args.threads}, "
        f"{len(texts)} sentences, {np.mean(lengths):.1f} tokens on average (max {max(lengths)})",
        flush=True,
    )

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
                elapsed = run_threads(drive, [(k, seconds, measured) for k in range(sessions)])
            calls = sum(counts)
            tps = calls * bs / elapsed
            layout = f"{sessions}x{threads}"
            results.append({"layout": layout, "batch_size": bs, "texts_per_s": tps,
                            "ms_per_batch": 1000 * elapsed * sessions / max(calls, 1)})
            print(f"sessions x threads {layout}, batch {bs:>3}: {tps:8.1f} texts/s  "
                  f"({1000 * elapsed * sessions / max(calls, 1):7.2f} ms per batch)", flush=True)

    best = max(results, key=lambda r: r["texts_per_s"])
    print(f"best: {best['texts_per_s']:.1f} texts/s at batch {best['batch_size']} ({best['layout']} sessions x threads)")

    # Batch-1 latency: what a server can approach at concurrency 1.
    singles = [clf.feed(clf.encode([t])) for t in texts]
    batch1 = {}
    kinds = (
        ("threads_all", lambda: clf),
        ("threads_one", lambda: classifier(1)),
        ("threads_all_nospin", lambda: classifier(args.threads, spinning=False)),
    )
    if device_provider:
        kinds = (("threads_one", lambda: clf),)
    for key, make in kinds:
        threads = 1 if key == "threads_one" else args.threads
        mean, p50 = latency(make(), singles, args.seconds, args.warmup)
        batch1[key] = {"threads": threads, "latency_ms_mean": mean, "latency_ms_p50": p50}
        spin = ", spinning off" if key.endswith("nospin") else ""
        print(f"batch-1 latency, 1 session x {threads} thread(s){spin}: mean {mean:.2f} ms, p50 {p50:.2f} ms", flush=True)

    mixed = None
    if args.mixed:
        mixed = measure_mixed(args, clf, classifier, layouts)

    if args.json:
        out = {"model_dir": str(args.model_dir), "threads": args.threads, "provider": args.provider,
               "onnxruntime": ort.__version__, "results": results, "best": best, "batch1": batch1}
        if mixed is not None:
            out["mixed"] = mixed
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


def measure_mixed(args, clf: TextClassifier, classifier, layouts: list[tuple[int, int]]) -> dict:
    """Throughput on a mixed-length file, naive (file order) and length-sorted batches of 32."""
    batch_size = 32
    texts = read_mixed(args.mixed)
    lengths = [sum(e.attention_mask) for e in clf.tokenizer.encode_batch(texts)]  # after truncation
    naive = list(range(len(texts)))
    by_length = sorted(naive, key=lambda i: lengths[i])
    print(f"mixed: {args.mixed}: {len(texts)} texts, {np.mean(lengths):.1f} tokens on average after truncation "
          f"(max {max(lengths)}), batches of {batch_size}", flush=True)
    sessions = {layout: [clf] if layout == (1, args.threads) else [classifier(layout[1]) for _ in range(layout[0])]
                for layout in layouts}
    report = {"file": str(args.mixed), "texts": len(texts), "batch_size": batch_size}
    for name, order, run_order in (("naive", naive, None), ("sorted", by_length, strided)):
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        if run_order:
            chunks = [chunks[i] for i in run_order(len(chunks))]
        feeds = [clf.feed(clf.encode([texts[i] for i in c])) for c in chunks]
        sizes = [len(c) for c in chunks]
        real = sum(lengths)
        padded = sum(len(c) * max(lengths[i] for i in c) for c in chunks)
        by_layout = {}
        for (n, threads), clfs in sessions.items():
            layout = f"{n}x{threads}"
            tps, calls = throughput(clfs, feeds, sizes, args.mixed_seconds, args.warmup)
            by_layout[layout] = tps
            print(f"mixed {name:>6}, sessions x threads {layout}: {tps:8.1f} texts/s  "
                  f"({calls} batches, {calls / len(feeds):.2f} passes over the file)", flush=True)
        best_layout = max(by_layout, key=by_layout.get)
        report[name] = {"best_texts_per_s": by_layout[best_layout], "best_layout": best_layout, "by_layout": by_layout}
        print(f"mixed {name:>6}: best {by_layout[best_layout]:.1f} texts/s ({best_layout}); "
              f"{100 * (padded - real) / padded:.0f}% of the computed tokens are padding", flush=True)
    ratio = report["sorted"]["best_texts_per_s"] / report["naive"]["best_texts_per_s"]
    print(f"mixed: sorted / naive = {ratio:.2f}")
    return report


if __name__ == "__main__":
    sys.exit(main())
