#!/usr/bin/env python3
"""Registers a trained model in MLflow the MLflow 3 way, and moves aliases: the registry half of a
retraining pipeline that feeds hotserve (see examples/README.md and examples/retrain.sh).

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 .venv/bin/python examples/register_model.py \\
        register --dir tests/fixtures/sentiment_v2 --name sentiment
    ... set-alias --name sentiment --alias champion --version 2 [--tag hotserve.validation=passed]
    ... get-alias --name sentiment --alias champion
    ... set-tag   --name sentiment --version 2 --tag hotserve.validation=failed
    HOTSERVE_WEBHOOK_SECRET=... ... create-webhook --url http://10.0.0.7:8080/hooks/mlflow

`register` logs the model as an MLflow 3 *logged model* (its own model_id, linked to the
training run that produced it) and registers that logged model as a new version. Two ways:

  --mode upload     (default) upload the MLflow model directory the training job wrote
                    (`mlflow.onnx.save_model` output plus tokenizer.json) byte for byte:
                    mlflow.initialize_logged_model -> MlflowClient.log_model_artifacts ->
                    mlflow.finalize_logged_model -> mlflow.register_model("models:/<model_id>").
                    What was validated before upload is exactly what hotserve downloads.
  --mode log-model  what a training script that holds the ONNX graph in memory does:
                    mlflow.onnx.log_model(onnx_model, name=..., extra_files=[tokenizer.json],
                    metadata={..., "tokenizer": "extra_files/tokenizer.json"},
                    registered_model_name=...). Re-serializes the graph (external data, as
                    log_model does by default); needs the `onnx` package.

Either way the tokenizer travels inside the model (hotserve reads `metadata.tokenizer`, else
`tokenizer.json` / `tokenizer/tokenizer.json`), and `metadata.labels`, `metadata.golden` and the
signature of the directory's MLmodel are kept. `--tokenizer FILE` adds or replaces the tokenizer.

Every command prints one JSON object on stdout (MLflow's own messages go to stderr), e.g.
{"name": "sentiment", "version": "2", "model_id": "m-...", "run_id": "...",
 "uri": "models:/sentiment/2"}. MLflow's client environment applies as usual
(MLFLOW_TRACKING_URI, MLFLOW_TRACKING_TOKEN, MLFLOW_TRACKING_USERNAME/PASSWORD, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import mlflow  # noqa: E402
import yaml  # noqa: E402
from mlflow import MlflowClient  # noqa: E402


def fail(message: str) -> None:
    raise SystemExit(f"register_model.py: {message}")


def key_values(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            fail(f"{what} '{pair}' is not key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = value
    return out


def read_mlmodel(model_dir: str) -> dict:
    path = os.path.join(model_dir, "MLmodel")
    if not os.path.isfile(path):
        fail(f"{model_dir} is not an MLflow model directory (no MLmodel file)")
    with open(path) as f:
        mlmodel = yaml.safe_load(f) or {}
    if "onnx" not in (mlmodel.get("flavors") or {}):
        fail(f"{path} has no onnx flavor; hotserve serves ONNX models "
             "(mlflow.onnx.save_model / log_model)")
    return mlmodel


def find_tokenizer(model_dir: str, mlmodel: dict) -> str | None:
    """The tokenizer hotserve would use, relative to the model directory, if any."""
    named = (mlmodel.get("metadata") or {}).get("tokenizer")
    for candidate in [named, "tokenizer.json", "tokenizer/tokenizer.json"]:
        if candidate and os.path.isfile(os.path.join(model_dir, candidate)):
            return candidate
    if named:
        fail(f"MLmodel names metadata.tokenizer '{named}' but {model_dir}/{named} does not exist")
    return None


def register_upload(args, client: MlflowClient) -> dict:
    """Uploads the model directory verbatim as a logged model of a new run and registers it."""
    mlmodel = read_mlmodel(args.dir)
    with mlflow.start_run(run_name=args.run_name) as run:
        run_id = run.info.run_id
        if args.param:
            mlflow.log_params(key_values(args.param, "--param"))
        model = mlflow.initialize_logged_model(name=args.artifact_name, source_run_id=run_id,
                                               tags=key_values(args.tag, "--tag") or None)
        staging = tempfile.mkdtemp(prefix="register-model-")
        try:
            dst = os.path.join(staging, "model")
            shutil.copytree(args.dir, dst)
            # What mlflow.<flavor>.log_model would have written for this logged model.
            mlmodel["model_id"] = model.model_id
            mlmodel["run_id"] = run_id
            if args.tokenizer:
                shutil.copyfile(args.tokenizer, os.path.join(dst, "tokenizer.json"))
                mlmodel.setdefault("metadata", {})["tokenizer"] = "tokenizer.json"
            elif find_tokenizer(dst, mlmodel) is None:
                print("register_model.py: no tokenizer in the model directory: hotserve will "
                      "serve it as a tensor model (/invocations only)", file=sys.stderr)
            with open(os.path.join(dst, "MLmodel"), "w") as f:
                yaml.safe_dump(mlmodel, f, default_flow_style=False, sort_keys=True)
            client.log_model_artifacts(model.model_id, dst)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        model = mlflow.finalize_logged_model(model.model_id, "READY")
        for key, value in key_values(args.metric, "--metric").items():
            # MLflow 3 links metrics to the logged model they describe.
            mlflow.log_metric(key, float(value), model_id=model.model_id)
    mv = mlflow.register_model(f"models:/{model.model_id}", args.name,
                               tags=key_values(args.version_tag, "--version-tag") or None)
    return {"model_id": model.model_id, "run_id": run_id, "version": str(mv.version)}


def register_log_model(args, client: MlflowClient) -> dict:
    """Logs the ONNX graph with mlflow.onnx.log_model, the tokenizer as an extra file."""
    import onnx  # only this mode needs it

    from mlflow.models import Model

    mlmodel = read_mlmodel(args.dir)
    onnx_path = os.path.join(args.dir, mlmodel["flavors"]["onnx"]["data"])
    graph = onnx.load(onnx_path)  # external data next to it is loaded too
    metadata = dict(mlmodel.get("metadata") or {})
    tokenizer = args.tokenizer
    if not tokenizer:
        relative = find_tokenizer(args.dir, mlmodel)
        tokenizer = os.path.join(args.dir, relative) if relative else None
    extra_files = None
    if tokenizer:
        # _copy_extra_files puts each file under extra_files/<basename> in the model.
        staging = tempfile.mkdtemp(prefix="register-model-")
        named = os.path.join(staging, "tokenizer.json")
        shutil.copyfile(tokenizer, named)
        extra_files = [named]
        metadata["tokenizer"] = "extra_files/tokenizer.json"
    signature = Model.load(args.dir).signature
    try:
        with mlflow.start_run(run_name=args.run_name) as run:
            if args.param:
                mlflow.log_params(key_values(args.param, "--param"))
            info = mlflow.onnx.log_model(
                graph,
                name=args.artifact_name,
                signature=signature,
                metadata=metadata,
                extra_files=extra_files,
                registered_model_name=args.name,
                tags=key_values(args.tag, "--tag") or None,
            )
            for key, value in key_values(args.metric, "--metric").items():
                mlflow.log_metric(key, float(value), model_id=info.model_id)
    finally:
        if extra_files:
            shutil.rmtree(os.path.dirname(extra_files[0]), ignore_errors=True)
    version = str(info.registered_model_version)
    for key, value in key_values(args.version_tag, "--version-tag").items():
        client.set_model_version_tag(args.name, version, key, value)
    return {"model_id": info.model_id, "run_id": run.info.run_id, "version": version}


def cmd_register(args) -> dict:
    client = MlflowClient()
    if args.experiment:
        mlflow.set_experiment(args.experiment)
    if args.mode == "upload":
        result = register_upload(args, client)
    else:
        result = register_log_model(args, client)
    answer = {"name": args.name, **result, "uri": f"models:/{args.name}/{result['version']}",
              "model_uri": f"models:/{result['model_id']}"}
    if args.report_alias:
        answer["alias"] = args.report_alias
        answer["alias_version"] = alias_version(client, args.name, args.report_alias)
    return answer


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def cmd_set_alias(args) -> dict:
    client = MlflowClient()
    previous = alias_version(client, args.name, args.alias)
    # Tags first: a webhook-driven fleet reloads on the alias event, so the version should be
    # fully described before the alias moves.
    for key, value in key_values(args.tag, "--tag").items():
        client.set_model_version_tag(args.name, str(args.version), key, value)
    client.set_registered_model_alias(args.name, args.alias, str(args.version))
    return {"name": args.name, "alias": args.alias, "version": str(args.version),
            "previous": previous, "uri": f"models:/{args.name}@{args.alias}"}


def cmd_get_alias(args) -> dict:
    version = alias_version(MlflowClient(), args.name, args.alias)
    if version is None:
        fail(f"{args.name} has no alias '{args.alias}'")
    return {"name": args.name, "alias": args.alias, "version": version}


def cmd_set_tag(args) -> dict:
    client = MlflowClient()
    tags = key_values(args.tag, "--tag")
    for key, value in tags.items():
        client.set_model_version_tag(args.name, str(args.version), key, value)
    return {"name": args.name, "version": str(args.version), "tags": tags}


def cmd_create_webhook(args) -> dict:
    secret = os.environ.get("HOTSERVE_WEBHOOK_SECRET")
    if not secret:
        fail("set HOTSERVE_WEBHOOK_SECRET: MLflow signs deliveries with it and hotserve checks them")
    events = args.event or ["model_version_alias.created", "model_version.created"]
    webhook = MlflowClient().create_webhook(name=args.webhook_name, url=args.url, events=events,
                                            secret=secret)
    return {"webhook_id": webhook.webhook_id, "url": args.url, "events": events}


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring for the details.")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("register", help="log a model directory and register it as a new version")
    r.add_argument("--dir", required=True, help="the MLflow model directory training produced")
    r.add_argument("--name", required=True, help="registered model name, e.g. sentiment")
    r.add_argument("--mode", choices=["upload", "log-model"], default="upload")
    r.add_argument("--tokenizer", help="tokenizer.json to ship with the model (default: the "
                   "one in the directory)")
    r.add_argument("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME"),
                   help="experiment of the training run (default: MLFLOW_EXPERIMENT_NAME, else "
                   "MLflow's default)")
    r.add_argument("--run-name", help="name of the training run")
    r.add_argument("--artifact-name", default="model", help="name of the logged model")
    r.add_argument("--param", action="append", help="training parameter key=value (repeatable)")
    r.add_argument("--metric", action="append", help="evaluation metric key=value (repeatable)")
    r.add_argument("--tag", action="append", help="logged-model tag key=value (repeatable)")
    r.add_argument("--version-tag", action="append", help="model-version tag key=value")
    r.add_argument("--report-alias", metavar="ALIAS",
                   help="also report which version ALIAS points at now (alias_version)")
    r.set_defaults(func=cmd_register)

    a = sub.add_parser("set-alias", help="point an alias at a version (prints the previous one)")
    a.add_argument("--name", required=True)
    a.add_argument("--alias", required=True)
    a.add_argument("--version", required=True)
    a.add_argument("--tag", action="append", help="version tag key=value set before the move")
    a.set_defaults(func=cmd_set_alias)

    g = sub.add_parser("get-alias", help="print the version an alias points at")
    g.add_argument("--name", required=True)
    g.add_argument("--alias", required=True)
    g.set_defaults(func=cmd_get_alias)

    t = sub.add_parser("set-tag", help="set model-version tags")
    t.add_argument("--name", required=True)
    t.add_argument("--version", required=True)
    t.add_argument("--tag", action="append", required=True, help="key=value (repeatable)")
    t.set_defaults(func=cmd_set_tag)

    w = sub.add_parser("create-webhook", help="a registry webhook to a hotserve's /hooks/mlflow, "
                       "signed with HOTSERVE_WEBHOOK_SECRET")
    w.add_argument("--url", required=True, help="e.g. http://hotserve.internal:8080/hooks/mlflow")
    w.add_argument("--event", action="append", help="default: model_version_alias.created and "
                   "model_version.created (repeatable)")
    w.add_argument("--webhook-name", default="hotserve")
    w.set_defaults(func=cmd_create_webhook)

    args = ap.parse_args()
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        fail("set MLFLOW_TRACKING_URI to your MLflow server, e.g. http://127.0.0.1:5000")
    return args.func(args)


if __name__ == "__main__":
    # MLflow prints run links to stdout: keep stdout for the one JSON line a script parses.
    answer_stream = sys.stdout
    sys.stdout = sys.stderr
    answer = main()
    answer_stream.write(json.dumps(answer) + "\n")
    answer_stream.flush()
