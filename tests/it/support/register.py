"""Registers models in a real MLflow server with MLflow's own Python client, for the tests.

The Rust tests run this script (with MLFLOW_TRACKING_URI pointing at the test server) to put
models into the registry exactly as a retraining pipeline would, then check that hotserve
resolves and downloads them. It reads one JSON command, or a JSON list of commands, from argv[1]
(or stdin when argv[1] is absent or "-") and prints one JSON result per command (a list when a
list was given). Running several commands in one call saves the ~2 s MLflow import per call.

Commands (field "op"):

  register          upload an MLflow model directory ("dir") verbatim as an MLflow 3 logged model
                    of a new run, register it under "name", then optionally set "aliases", a
                    "stage" and version "tags". "corrupt" breaks a copy first: "onnx" (the ONNX
                    file is garbage), "tokenizer" (tokenizer.json does not parse) or "golden"
                    (every golden example expects the wrong label); "variant" makes another
                    valid version: "swap_labels" (the label names are swapped, golden examples
                    too: it passes the gate and disagrees with the original on every input) or
                    "slow" (the same answers after a chain of large matrix products whose
                    result is multiplied by zero: tens of times slower; "layers" products, 16 by
                    default). "artifact_path" names the
                    logged model (default "model"). The uploaded MLmodel gets the new model_id
                    and run_id, as mlflow.<flavor>.log_model would have written them.
  log-run-only      log "dir" under a new run without registering it: "mode" "logged-model" (the
                    MLflow 3 way: files live under the logged model, the run folder stays empty)
                    or "run-artifacts" (the MLflow 2 way: mlflow.log_artifacts into the run).
  register-name     create the registered model "name" with registered-model "tags"; with
                    "source" (an artifact URI already uploaded, e.g. a register result's
                    "artifact_uri", and its "run_id" and "model_id"), also version 1 from it with
                    "aliases" on it. Nothing is uploaded: cheap enough for many models.
  set-alias         point "alias" of "name" at "version"
  delete-alias      remove "alias" from "name"
  transition-stage  move "version" of "name" to "stage" ("archive_existing": bool)
  set-tag           set version tag "key" = "value"
  delete-version    delete "version" of "name"
  describe          describe "version" of "name" (with its "tags")
  create-webhook    a registry webhook to "url" for "events", signed with "secret"

Every result carries the URIs a test needs: {"name", "version", "run_id", "model_id",
"artifact_uri", "uris": {"version", "model", "run", "alias:<a>"...}}; register and log-run-only
add "files": {path: {"size", "sha256"}} of exactly what was uploaded.
"""

import hashlib
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


def slow_down(dst, mlmodel, layers):
    """Adds to the text graph in `dst` a chain of 512x512 matrix products on the pooled
    embedding whose sum, times zero, is added to the logits: the same answers, much slower.
    The model is saved as one file (no external data)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    onnx_file = os.path.join(dst, mlmodel["flavors"]["onnx"]["data"])
    model = onnx.load(onnx_file)
    graph = model.graph
    width = 512
    rng = np.random.default_rng(7)
    pooled_width = next(i for i in graph.initializer if i.name == "embeddings").dims[1]
    graph.initializer.extend([
        numpy_helper.from_array(
            (rng.standard_normal((pooled_width, width)) * 0.1).astype(np.float32), "slow_in"),
        numpy_helper.from_array(
            (rng.standard_normal((width, width)) * 0.05).astype(np.float32), "slow_w"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "slow_zero"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "slow_axis"),
    ])
    for node in graph.node:
        if node.name == "classifier_add":
            node.output[0] = "logits_fast"
    nodes = [helper.make_node("MatMul", ["pooled", "slow_in"], ["slow_0"], name="slow_in")]
    for layer in range(layers):
        nodes.append(helper.make_node("MatMul", [f"slow_{layer}", "slow_w"],
                                      [f"slow_mm_{layer}"], name=f"slow_mm_{layer}"))
        nodes.append(helper.make_node("Tanh", [f"slow_mm_{layer}"], [f"slow_{layer + 1}"],
                                      name=f"slow_tanh_{layer}"))
    nodes += [
        helper.make_node("ReduceSum", [f"slow_{layers}", "slow_axis"], ["slow_sum"],
                         keepdims=1, name="slow_sum"),
        helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"], name="slow_zero"),
        helper.make_node("Add", ["logits_fast", "slow_nothing"], ["logits"], name="slow_add"),
    ]
    graph.node.extend(nodes)
    for name in os.listdir(dst):
        if name.endswith(".data"):
            os.remove(os.path.join(dst, name))
    onnx.save_model(model, onnx_file, save_as_external_data=False)


def patched_copy(src_dir, model_id, run_id, corrupt, variant=None, layers=16):
    """Copies an MLflow model directory, stamping the new ids into MLmodel and breaking it on
    request; returns the temporary directory (the caller removes it)."""
    tmp = tempfile.mkdtemp(prefix="hotserve-register-")
    dst = os.path.join(tmp, "model")
    shutil.copytree(src_dir, dst)
    mlmodel_path = os.path.join(dst, "MLmodel")
    with open(mlmodel_path) as f:
        mlmodel = yaml.safe_load(f)
    mlmodel["model_id"] = model_id
    mlmodel["run_id"] = run_id
    metadata = mlmodel.get("metadata") or {}
    if corrupt == "onnx":
        onnx_file = mlmodel["flavors"]["onnx"]["data"]
        with open(os.path.join(dst, onnx_file), "wb") as f:
            f.write(b"this is not an onnx protobuf")
    elif corrupt == "tokenizer":
        tokenizer = metadata.get("tokenizer", "tokenizer.json")
        with open(os.path.join(dst, tokenizer), "w") as f:
            f.write('{"version": "1.0", "model": ')
    elif corrupt == "golden":
        labels = metadata.get("labels") or []
        if len(labels) < 2 or not metadata.get("golden"):
            raise SystemExit("corrupt=golden needs metadata.labels (2+) and metadata.golden")
        for example in metadata["golden"]:
            wrong = [label for label in labels if label != example["label"]]
            example["label"] = wrong[0]
    elif corrupt is not None:
        raise SystemExit(f"unknown corrupt variant {corrupt!r}; use onnx, tokenizer or golden")
    if variant == "swap_labels":
        labels = metadata["labels"]
        swapped = {labels[0]: labels[1], labels[1]: labels[0]}
        metadata["labels"] = [labels[1], labels[0]]
        for example in metadata.get("golden") or []:
            example["label"] = swapped[example["label"]]
    elif variant == "slow":
        slow_down(dst, mlmodel, layers)
    elif variant is not None:
        raise SystemExit(f"unknown variant {variant!r}; use swap_labels or slow")
    with open(mlmodel_path, "w") as f:
        yaml.safe_dump(mlmodel, f, default_flow_style=False, sort_keys=True)
    return tmp, dst


def manifest(directory):
    """{relative path: {"size", "sha256"}} of every file under `directory`: what was uploaded,
    for the tests to compare downloads against."""
    files = {}
    for parent, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            files[relative] = {"size": os.path.getsize(path), "sha256": digest}
    return files


def log_logged_model(src_dir, artifact_path, corrupt, variant=None, layers=16):
    """Logs `src_dir` as an MLflow 3 logged model of a new run; returns (run_id, model,
    manifest of the uploaded files)."""
    client = MlflowClient()
    with mlflow.start_run() as run:
        run_id = run.info.run_id
        model = mlflow.initialize_logged_model(name=artifact_path, source_run_id=run_id)
        tmp, dst = patched_copy(src_dir, model.model_id, run_id, corrupt, variant, layers)
        try:
            client.log_model_artifacts(model.model_id, dst)
            files = manifest(dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        model = mlflow.finalize_logged_model(model.model_id, "READY")
    return run_id, model, files


def describe_version(name, version):
    client = MlflowClient()
    mv = client.get_model_version(name, str(version))
    model_id = getattr(mv, "model_id", None)
    if not model_id and mv.source.startswith("models:/m-"):
        model_id = mv.source[len("models:/") :]
    uris = {"version": f"models:/{name}/{mv.version}"}
    if model_id:
        uris["model"] = f"models:/{model_id}"
    for alias in mv.aliases or []:
        uris[f"alias:{alias}"] = f"models:/{name}@{alias}"
    return {
        "name": name,
        "version": str(mv.version),
        "run_id": mv.run_id,
        "model_id": model_id,
        "stage": mv.current_stage,
        "aliases": list(mv.aliases or []),
        "status": mv.status,
        "artifact_uri": client.get_model_version_download_uri(name, mv.version),
        "uris": uris,
        "tags": dict(mv.tags or {}),
    }


def op_register(cmd):
    artifact_path = cmd.get("artifact_path", "model")
    run_id, model, files = log_logged_model(
        cmd["dir"], artifact_path, cmd.get("corrupt"), cmd.get("variant"), cmd.get("layers", 16)
    )
    mv = mlflow.register_model(f"models:/{model.model_id}", cmd["name"], tags=cmd.get("tags"))
    client = MlflowClient()
    for alias in cmd.get("aliases", []):
        client.set_registered_model_alias(cmd["name"], alias, mv.version)
    if cmd.get("stage"):
        client.transition_model_version_stage(
            cmd["name"], mv.version, cmd["stage"], cmd.get("archive_existing", False)
        )
    result = describe_version(cmd["name"], mv.version)
    result["uris"]["run"] = f"runs:/{run_id}/{artifact_path}"
    result["files"] = files
    return result


def op_log_run_only(cmd):
    artifact_path = cmd.get("artifact_path", "model")
    mode = cmd.get("mode", "logged-model")
    if mode == "logged-model":
        run_id, model, files = log_logged_model(cmd["dir"], artifact_path, cmd.get("corrupt"))
        model_id, artifact_uri = model.model_id, model.artifact_location
    elif mode == "run-artifacts":
        with mlflow.start_run() as run:
            run_id = run.info.run_id
            mlflow.log_artifacts(cmd["dir"], artifact_path)
            artifact_uri = f"{run.info.artifact_uri}/{artifact_path}"
            files = manifest(cmd["dir"])
        model_id = None
    else:
        raise SystemExit(f"unknown mode {mode!r}; use logged-model or run-artifacts")
    uris = {"run": f"runs:/{run_id}/{artifact_path}"}
    if model_id:
        uris["model"] = f"models:/{model_id}"
    return {
        "run_id": run_id,
        "model_id": model_id,
        "artifact_uri": artifact_uri,
        "uris": uris,
        "files": files,
    }


def op_register_name(cmd):
    client = MlflowClient()
    client.create_registered_model(cmd["name"], tags=cmd.get("tags"))
    result = {"name": cmd["name"]}
    if cmd.get("source"):
        mv = client.create_model_version(
            cmd["name"], cmd["source"], run_id=cmd.get("run_id"), model_id=cmd.get("model_id")
        )
        for alias in cmd.get("aliases", []):
            client.set_registered_model_alias(cmd["name"], alias, mv.version)
        result["version"] = str(mv.version)
    return result


def op_set_model_tag(cmd):
    """A tag on the registered model itself (what a discovery filter reads)."""
    MlflowClient().set_registered_model_tag(cmd["name"], cmd["key"], cmd["value"])
    return {"name": cmd["name"], cmd["key"]: cmd["value"]}


def op_set_alias(cmd):
    MlflowClient().set_registered_model_alias(cmd["name"], cmd["alias"], str(cmd["version"]))
    return describe_version(cmd["name"], cmd["version"])


def op_delete_alias(cmd):
    MlflowClient().delete_registered_model_alias(cmd["name"], cmd["alias"])
    return {"name": cmd["name"], "deleted_alias": cmd["alias"]}


def op_transition_stage(cmd):
    MlflowClient().transition_model_version_stage(
        cmd["name"], str(cmd["version"]), cmd["stage"], cmd.get("archive_existing", False)
    )
    return describe_version(cmd["name"], cmd["version"])


def op_set_tag(cmd):
    MlflowClient().set_model_version_tag(
        cmd["name"], str(cmd["version"]), cmd["key"], cmd["value"]
    )
    return describe_version(cmd["name"], cmd["version"])


def op_describe(cmd):
    return describe_version(cmd["name"], cmd["version"])


def op_delete_version(cmd):
    MlflowClient().delete_model_version(cmd["name"], str(cmd["version"]))
    return {"name": cmd["name"], "deleted_version": str(cmd["version"])}


def op_create_webhook(cmd):
    """A registry webhook to "url" for "events" (default: the alias and version events),
    signed with "secret"."""
    events = cmd.get("events") or ["model_version.created", "model_version_alias.created"]
    webhook = MlflowClient().create_webhook(
        name=cmd.get("webhook_name", "hotserve"), url=cmd["url"], events=events, secret=cmd["secret"]
    )
    return {"webhook_id": webhook.webhook_id, "url": cmd["url"], "events": events}


OPS = {
    "create-webhook": op_create_webhook,
    "register": op_register,
    "register-name": op_register_name,
    "log-run-only": op_log_run_only,
    "set-alias": op_set_alias,
    "delete-alias": op_delete_alias,
    "transition-stage": op_transition_stage,
    "set-tag": op_set_tag,
    "set-model-tag": op_set_model_tag,
    "delete-version": op_delete_version,
    "describe": op_describe,
}


def main():
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise SystemExit("register.py: set MLFLOW_TRACKING_URI to the test MLflow server")
    text = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] != "-" else sys.stdin.read()
    request = json.loads(text)
    commands = request if isinstance(request, list) else [request]
    results = []
    for cmd in commands:
        op = OPS.get(cmd.get("op"))
        if op is None:
            raise SystemExit(f"register.py: unknown op {cmd.get('op')!r}; known: {sorted(OPS)}")
        results.append(op(cmd))
    return results if isinstance(request, list) else results[0]


if __name__ == "__main__":
    # MLflow prints run links to stdout: send everything to stderr and keep stdout for the one
    # line of JSON the caller parses.
    answer_stream = sys.stdout
    sys.stdout = sys.stderr
    answer = main()
    answer_stream.write(json.dumps(answer) + "\n")
    answer_stream.flush()
