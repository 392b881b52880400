#!/usr/bin/env python3
"""Consistency checks for hotserve's deployment files (deploy/), run by scripts/check-deploy.sh.

The schema checks (kubernetes-validate, systemd-analyze, hadolint) live in the shell script;
this file checks what no schema knows: that the manifests, the unit file and the container
build agree with each other and with the binary (probe paths and port, setting and variable
names, timeouts, user ids, the pinned ONNX Runtime).

    python tests/deploy/test_manifests.py                    # render with the fallback below
    python tests/deploy/test_manifests.py --base B.yaml --pinned P.yaml
                                             # check manifests rendered by real kustomize, and
                                             # check that the fallback renders the same objects
    python tests/deploy/test_manifests.py render DIR         # the fallback renderer alone
    python tests/deploy/test_manifests.py smoke BINARY RENDERED.yaml LIBONNXRUNTIME
                                             # run the built binary as the Deployment would

Every `test_*` function also runs under pytest (rendering with the fallback).
Needs PyYAML only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import struct
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
PINNED = K8S / "overlays" / "pinned"
UNIT = DEPLOY / "systemd" / "hotserve.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "hotserve.env.example"
CONTAINERFILE = DEPLOY / "Containerfile"
PROBES = K8S / "probes.json"

# Filled by main() with documents rendered by real kustomize; else the fallback renders.
RENDERED: dict[str, list[dict]] = {}


# --- A minimal kustomize, for machines without kubectl/kustomize -----------------------------
# Supports what deploy/k8s uses: resources (files and directories), images, and
# strategic-merge patches (lists of objects merge by name). Anything else is an error, never
# silently ignored. scripts/check-deploy.sh compares it with real kustomize where available.

SUPPORTED_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "images", "patches"}


def render(directory: Path) -> list[dict]:
    directory = Path(directory)
    kfile = directory / "kustomization.yaml"
    kust = yaml.safe_load(kfile.read_text()) or {}
    unsupported = set(kust) - SUPPORTED_KUSTOMIZATION_KEYS
    if unsupported:
        raise SystemExit(f"fallback renderer: {kfile}: unsupported keys {sorted(unsupported)}")
    docs: list[dict] = []
    for entry in kust.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            docs.extend(render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for patch_entry in kust.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise SystemExit(f"fallback renderer: {kfile}: only `patches: - path:` is supported")
        for patch in yaml.safe_load_all((directory / patch_entry["path"]).read_text()):
            if not patch:
                continue
            target = [d for d in docs if same_object(d, patch)]
            if len(target) != 1:
                raise SystemExit(f"fallback renderer: patch {patch_entry['path']} matches {len(target)} objects")
            merged = strategic_merge(target[0], patch)
            docs[docs.index(target[0])] = merged
    for image in kust.get("images", []):
        for doc in docs:
            for container in pod_containers(doc):
                set_image(container, image)
    return docs


def same_object(a: dict, b: dict) -> bool:
    return (a.get("kind"), a.get("metadata", {}).get("name")) == (b.get("kind"), b.get("metadata", {}).get("name"))


def strategic_merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        if "$patch" in patch or any(str(k).startswith("$") for k in patch):
            raise SystemExit("fallback renderer: $patch directives are not supported")
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(
        isinstance(item, dict) and "name" in item for item in base + patch
    ):
        out = [copy.deepcopy(item) for item in base]
        for item in patch:
            for i, existing in enumerate(out):
                if existing["name"] == item["name"]:
                    out[i] = strategic_merge(existing, item)
                    break
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return doc["spec"]["template"]["spec"]
    if doc.get("kind") == "Pod":
        return doc["spec"]
    return None


def pod_containers(doc: dict) -> list[dict]:
    spec = pod_spec(doc) or {}
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def set_image(container: dict, image: dict) -> None:
    current = container.get("image", "")
    name = re.split(r"[@]", current)[0]
    name = re.sub(r":[^/:]+$", "", name)
    if name != image["name"]:
        return
    new = image.get("newName", name)
    if "digest" in image:
        container["image"] = f"{new}@{image['digest']}"
    elif "newTag" in image:
        container["image"] = f"{new}:{image['newTag']}"
    else:
        container["image"] = new + current[len(name):]


def normalize(value):
    """Order-insensitive form of named lists (kustomize may order merged env entries differently)."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [normalize(v) for v in value]
        if items and all(isinstance(i, dict) and "name" in i for i in items):
            return sorted(items, key=lambda i: str(i["name"]))
        return items
    return value


def by_key(docs: list[dict]) -> dict[tuple, dict]:
    return {(d["apiVersion"], d["kind"], d["metadata"]["name"]): normalize(d) for d in docs}


# --- Facts from the source tree -------------------------------------------------------------


SETTINGS_RS = ROOT / "src" / "config" / "settings.rs"


def settings_table() -> dict[str, str]:
    """The settings! list in src/config/settings.rs: YAML key -> environment variable."""
    text = SETTINGS_RS.read_text()
    pairs = re.findall(r'^\s*([a-z_]+): [^{\n]+\{\s*env:\s*"([A-Z_]+)"', text, re.M)
    assert len(pairs) >= 20, f"could not read the settings from {SETTINGS_RS} ({len(pairs)} found)"
    return dict(pairs)


def mlflow_variables() -> set[str]:
    """MLFLOW_* client variables hotserve reads (string literals in src/)."""
    names: set[str] = set()
    for path in (ROOT / "src").rglob("*.rs"):
        names.update(re.findall(r'"(MLFLOW_[A-Z_]+)"', path.read_text()))
    assert "MLFLOW_TRACKING_URI" in names, "no MLFLOW_TRACKING_URI literal found in src/"
    return names


def known_variables() -> set[str]:
    return set(settings_table().values()) | mlflow_variables() | {"HOTSERVE_CONFIG"}


def parse_duration(text: str) -> float:
    """hotserve's duration syntax: 30s, 500ms, 2m, 1h, 0."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(text).strip())
    assert match, f"not a duration: {text!r}"
    number, unit = float(match.group(1)), match.group(2)
    if unit is None:
        assert number == 0, f"a duration needs a unit unless it is 0: {text!r}"
        return 0.0
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def systemd_seconds(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h)?", text):
        total += float(number) * {"ms": 0.001, "s": 1, "": 1, "min": 60, "m": 60, "h": 3600}[unit or ""]
    return total


def unit_directives() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def containerfile_facts() -> dict:
    text = CONTAINERFILE.read_text()
    args = dict(re.findall(r"^ARG\s+([A-Z0-9_]+)=(\S+)", text, re.M))
    env = dict(re.findall(r"\b(ORT_DYLIB_PATH|HOTSERVE_STATE_DIR|HOTSERVE_LISTEN)=(\S+)", text))
    return {
        "args": args,
        "env": env,
        "user": re.findall(r"^USER\s+(\S+)", text, re.M),
        "expose": re.findall(r"^EXPOSE\s+(\d+)", text, re.M),
        "entrypoint": re.findall(r"^ENTRYPOINT\s+(\[.*\])", text, re.M),
        "from": re.findall(r"^FROM\s+(\S+)", text, re.M),
    }


def config_layer(text: str) -> dict:
    data = yaml.safe_load(text) or {}
    assert isinstance(data, dict), "a hotserve config file is a mapping"
    return data


# --- Rendered manifests ---------------------------------------------------------------------


def rendered(name: str) -> list[dict]:
    if name not in RENDERED:
        RENDERED[name] = render({"base": BASE, "pinned": PINNED}[name])
    return RENDERED[name]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(docs: list[dict]) -> dict:
    containers = pod_spec(find(docs, "Deployment", "hotserve"))["containers"]
    matching = [c for c in containers if c["name"] == "hotserve"]
    assert len(matching) == 1, "the Deployment has no container named hotserve"
    return matching[0]


def env_of(docs: list[dict]) -> dict[str, str]:
    values = {}
    for item in container(docs).get("env", []):
        assert "value" in item, f"env {item['name']}: only literal values are expected"
        values[item["name"]] = str(item["value"])
    return values


def effective_settings(docs: list[dict]) -> dict[str, str]:
    """What hotserve would see in the pod: the ConfigMap file, overridden by the environment."""
    args = container(docs)["args"]
    config_path = args[args.index("--config") + 1]
    mount = next(m for m in container(docs)["volumeMounts"] if config_path.startswith(m["mountPath"].rstrip("/") + "/"))
    volume = next(v for v in pod_spec(find(docs, "Deployment", "hotserve"))["volumes"] if v["name"] == mount["name"])
    configmap = find(docs, "ConfigMap", volume["configMap"]["name"])
    key = config_path[len(mount["mountPath"].rstrip("/")) + 1 :]
    assert key in configmap["data"], f"ConfigMap {configmap['metadata']['name']} has no key {key} for --config {config_path}"
    values = {k: str(v) for k, v in config_layer(configmap["data"][key]).items() if v is not None}
    env_to_key = {env: key for key, env in settings_table().items()}
    for name, value in env_of(docs).items():
        if name in env_to_key:
            values[env_to_key[name]] = value
    return values


def resolve_port(port, ports: list[dict]) -> int:
    if isinstance(port, int):
        return port
    matching = [p["containerPort"] for p in ports if p.get("name") == port]
    assert matching, f"port name {port!r} is not a container port"
    return matching[0]


# --- Checks ---------------------------------------------------------------------------------


def test_probes_match_probes_json():
    probes = json.loads(PROBES.read_text())
    assert probes["port"] == 8080
    for name in ("base", "pinned"):
        c = container(rendered(name))
        ports = c["ports"]
        assert [p["containerPort"] for p in ports if p["name"] == probes["port_name"]] == [probes["port"]]
        for kind, probe_key in (("liveness", "livenessProbe"), ("readiness", "readinessProbe"), ("startup", "startupProbe")):
            probe = c[probe_key]["httpGet"]
            assert probe["path"] == probes[kind], f"{name}: {probe_key} path {probe['path']} != {probes[kind]}"
            assert resolve_port(probe["port"], ports) == probes["port"], f"{name}: {probe_key} port"
        annotations = find(rendered(name), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(probes["port"])
        assert annotations["prometheus.io/path"] == probes["metrics"]
        listen = effective_settings(rendered(name)).get("listen", "0.0.0.0:8080")
        assert listen.rsplit(":", 1)[1] == str(probes["port"]), f"{name}: hotserve listens on {listen}"


def test_binary_serves_the_probe_paths():
    probes = json.loads(PROBES.read_text())
    source = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.rs"))
    for path in {probes["liveness"], probes["readiness"], probes["startup"], probes["metrics"]}:
        assert f'"{path}"' in source, f"no route {path} in src/"
    listen = re.search(r'^\s*listen: SocketAddr \{[^}]*default: "([^"]+)"', SETTINGS_RS.read_text(), re.M)
    assert listen and listen.group(1) == "0.0.0.0:8080", (
        "the default listen address in src/config/settings.rs is no longer 0.0.0.0:8080"
    )
    assert containerfile_facts()["expose"] == [str(probes["port"])]


def test_service_routes_to_the_http_port():
    for name in ("base", "pinned"):
        docs = rendered(name)
        service = find(docs, "Service", "hotserve")
        labels = find(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items()), "Service selector"
        (port,) = service["spec"]["ports"]
        assert port["name"] == "http" and port["port"] == 80
        assert resolve_port(port["targetPort"], container(docs)["ports"]) == 8080


def test_no_service_links_and_no_token():
    for name in ("base", "pinned"):
        spec = pod_spec(find(rendered(name), "Deployment"))
        assert spec.get("enableServiceLinks") is False, "enableServiceLinks must be false (HOTSERVE_* service variables)"
        assert spec.get("automountServiceAccountToken") is False


def test_grace_period_covers_drain_and_shutdown():
    for name in ("base", "pinned"):
        docs = rendered(name)
        settings = effective_settings(docs)
        drain = parse_duration(settings.get("drain_delay", "0"))
        shutdown = parse_duration(settings.get("shutdown_timeout", "30s"))
        grace = pod_spec(find(docs, "Deployment"))["terminationGracePeriodSeconds"]
        assert drain > 0, "set drain_delay so endpoints stop routing before the listener closes"
        assert grace >= drain + shutdown + 5, f"{name}: grace {grace}s < drain {drain}s + shutdown {shutdown}s + 5s"


def test_startup_probe_allows_a_cold_download():
    for name in ("base", "pinned"):
        probe = container(rendered(name))["startupProbe"]
        budget = probe["periodSeconds"] * probe["failureThreshold"]
        assert budget >= 300, f"startup probe allows only {budget}s for the first model download"


def test_config_and_environment_names_are_hotserve_settings():
    keys = set(settings_table())
    known = known_variables()
    for name in ("base", "pinned"):
        docs = rendered(name)
        for configmap in (d for d in docs if d["kind"] == "ConfigMap"):
            for text in configmap["data"].values():
                unknown = set(config_layer(text)) - keys
                assert not unknown, f"ConfigMap keys hotserve rejects: {sorted(unknown)}"
        unknown = set(env_of(docs)) - known
        assert not unknown, f"{name}: env variables hotserve does not read: {sorted(unknown)}"
        settings = effective_settings(docs)
        for key in ("poll_interval", "drain_delay", "shutdown_timeout", "request_timeout"):
            if key in settings:
                parse_duration(settings[key])
        assert settings.get("log_format", "text") in {"text", "json"}
        assert settings.get("reload_policy", "availability") in {"availability", "resource"}
    secret = yaml.safe_load((BASE / "secret.yaml").read_text())
    data = secret.get("stringData", {})
    assert set(data) <= known, f"secret.yaml keys hotserve does not read: {sorted(set(data) - known)}"
    assert all(str(v).strip() for v in data.values()), "an empty setting is a configuration error"
    env_names = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M)
    assert "MODEL_URI" in env_names
    assert set(env_names) <= known, f"hotserve.env.example names unknown variables: {sorted(set(env_names) - known)}"
    for line in ENV_EXAMPLE.read_text().splitlines():
        if re.match(r"^[A-Z]", line):
            assert line.partition("=")[2].strip(), f"hotserve.env.example: empty value in {line!r}"
    config_layer_keys = set(config_layer((ROOT / "config" / "hotserve.yaml").read_text()))
    assert config_layer_keys <= keys, "config/hotserve.yaml (installed as /etc/hotserve/hotserve.yaml) has unknown keys"


def test_secret_is_wired_but_not_applied():
    secret = yaml.safe_load((BASE / "secret.yaml").read_text())
    for name in ("base", "pinned"):
        docs = rendered(name)
        assert not [d for d in docs if d["kind"] == "Secret"], "the base must not apply placeholder secrets"
        refs = [e["secretRef"]["name"] for e in container(docs).get("envFrom", []) if "secretRef" in e]
        assert refs == [secret["metadata"]["name"]]


def test_follow_alias_versus_pinned_version():
    base, pinned = env_of(rendered("base")), env_of(rendered("pinned"))
    assert re.fullmatch(r"models:/[\w.-]+@[\w-]+", base["MODEL_URI"]), f"base should follow an alias: {base['MODEL_URI']}"
    assert re.fullmatch(r"models:/[\w.-]+/\d+", pinned["MODEL_URI"]), f"pinned should name a version: {pinned['MODEL_URI']}"
    assert base["MODEL_URI"].split("@")[0] == pinned["MODEL_URI"].rsplit("/", 1)[0], "same model name"
    assert parse_duration(effective_settings(rendered("pinned"))["poll_interval"]) == 0
    assert parse_duration(effective_settings(rendered("base"))["poll_interval"]) > 0
    # The overlay changes nothing but the environment.
    b = find(rendered("base"), "Deployment")
    p = copy.deepcopy(find(rendered("pinned"), "Deployment"))
    for c in pod_spec(p)["containers"]:
        c["env"] = next(x for x in pod_spec(b)["containers"] if x["name"] == c["name"])["env"]
    assert normalize(p) == normalize(b)


def test_pod_security_and_writable_paths():
    user = containerfile_facts()["user"][-1].split(":")[0]
    for name in ("base", "pinned"):
        docs = rendered(name)
        spec = pod_spec(find(docs, "Deployment"))
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, f"{name}: runAsNonRoot"
        assert str(pod["runAsUser"]) == user, f"{name}: runAsUser {pod['runAsUser']} != the image's USER {user}"
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", f"{name}: seccompProfile"
        c = container(docs)
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, f"{name}: readOnlyRootFilesystem"
        assert sc["allowPrivilegeEscalation"] is False, f"{name}: allowPrivilegeEscalation"
        assert sc["capabilities"]["drop"] == ["ALL"], f"{name}: capabilities.drop"
        writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for m in c["volumeMounts"]:
            if not m.get("readOnly"):
                assert "emptyDir" in volumes[m["name"]], f"{m['mountPath']} should be an emptyDir"
        assert "/tmp" in writable, "hotserve validate needs a writable /tmp"
        settings = effective_settings(docs)
        for key in ("state_dir", "cache_dir"):
            path = settings[key]
            assert any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable), f"{key} {path} is not writable"


def test_resources_and_scaling():
    for name in ("base", "pinned"):
        docs = rendered(name)
        resources = container(docs)["resources"]
        mib = {"Mi": 1, "Gi": 1024}
        req = int(resources["requests"]["memory"][:-2]) * mib[resources["requests"]["memory"][-2:]]
        lim = int(resources["limits"]["memory"][:-2]) * mib[resources["limits"]["memory"][-2:]]
        assert 0 < req <= lim and lim >= 2 * 300, "two ~300 MiB models are resident during a swap"
        assert float(resources["requests"]["cpu"]) <= float(resources["limits"]["cpu"])
        deployment = find(docs, "Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        pdb = find(docs, "PodDisruptionBudget")
        assert all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
        hpa = find(docs, "HorizontalPodAutoscaler")
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
        assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"], "a node drain must be able to evict a pod"
        assert deployment["spec"]["replicas"] >= hpa["spec"]["minReplicas"]
        assert container(docs)["image"].startswith("registry.example.com/ml/hotserve:")


def test_systemd_unit_matches_the_binary():
    d = unit_directives()
    expect = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/usr/local/bin/hotserve serve --config /etc/hotserve/hotserve.yaml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "DynamicUser": "yes",
        "StateDirectory": "hotserve",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "UMask": "0077",
        "LimitNOFILE": "65536",
    }
    for key, value in expect.items():
        assert d.get(key) == [value], f"hotserve.service: {key}={d.get(key)} (expected {value})"
    assert "EnvironmentFile" in d and d["EnvironmentFile"] == ["-/etc/hotserve/hotserve.env"]
    assert "AF_UNIX" in d["RestrictAddressFamilies"][0], "sd_notify needs AF_UNIX"
    assert systemd_seconds(d["TimeoutStartSec"][0]) >= 300
    assert systemd_seconds(d["WatchdogSec"][0]) > 0
    # The unit's config file is config/hotserve.yaml: its drain + shutdown must fit in TimeoutStopSec.
    defaults = config_layer((ROOT / "config" / "hotserve.yaml").read_text())
    budget = parse_duration(str(defaults.get("drain_delay", "0"))) + parse_duration(str(defaults.get("shutdown_timeout", "30s")))
    assert systemd_seconds(d["TimeoutStopSec"][0]) >= budget + 5, "TimeoutStopSec must exceed drain_delay + shutdown_timeout"
    # The same library and binary paths as the container image.
    facts = containerfile_facts()
    ort = [v.split("=", 1)[1] for v in d["Environment"] if v.startswith("ORT_DYLIB_PATH=")]
    assert ort == [facts["env"]["ORT_DYLIB_PATH"]]
    assert json.loads(facts["entrypoint"][-1])[0] == d["ExecStart"][0].split()[0]


def test_onnxruntime_pin_is_consistent():
    facts = containerfile_facts()
    args = facts["args"]
    pinned = re.search(r"^onnxruntime==(\S+)", (ROOT / "scripts" / "requirements-runtime.txt").read_text(), re.M)
    assert pinned and args["ORT_VERSION"] == pinned.group(1), "Containerfile and requirements-runtime.txt pin different ONNX Runtimes"
    assert args["ORT_WHEEL"].startswith(f"onnxruntime-{args['ORT_VERSION']}-cp311-cp311-manylinux")
    assert re.fullmatch(r"[0-9a-f]{64}", args["ORT_WHEEL_SHA256"]) and re.fullmatch(r"[0-9a-f]{64}", args["ORT_LIB_SHA256"])
    readme = (DEPLOY / "systemd" / "README.md").read_text()
    assert args["ORT_WHEEL_SHA256"] in readme and f"onnxruntime=={args['ORT_VERSION']}" in readme
    assert facts["from"][-1].startswith("gcr.io/distroless/cc-debian12:nonroot")
    # The library the tests run against (scripts/setup.sh puts it in .venv) is the one the
    # image ships, and it loads under MemoryDenyWriteExecute=yes.
    libs = sorted(ROOT.glob(f".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.{args['ORT_VERSION']}"))
    if not libs:
        print(f"  note: no .venv ONNX Runtime {args['ORT_VERSION']} library here; library checksum and ELF checks skipped")
        return
    data = libs[0].read_bytes()
    assert hashlib.sha256(data).hexdigest() == args["ORT_LIB_SHA256"], f"{libs[0]} differs from ORT_LIB_SHA256"
    executable_stack, text_relocations = elf_wx_flags(data)
    assert not executable_stack, "libonnxruntime.so wants an executable stack: MemoryDenyWriteExecute would break it"
    assert not text_relocations, "libonnxruntime.so has text relocations: MemoryDenyWriteExecute would break it"


def elf_wx_flags(data: bytes) -> tuple[bool, bool]:
    """(executable stack?, text relocations?) of a little-endian ELF64 shared object."""
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a little-endian ELF64 file"
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    exec_stack, textrel = False, False
    for i in range(phnum):
        p_type, p_flags, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 0x6474E551:  # PT_GNU_STACK
            exec_stack = bool(p_flags & 1)
        if p_type == 2:  # PT_DYNAMIC
            for off in range(p_offset, p_offset + p_filesz, 16):
                tag, val = struct.unpack_from("<qQ", data, off)
                if tag == 0:
                    break
                if tag == 22 or (tag == 30 and val & 0x4):  # DT_TEXTREL, DT_FLAGS & DF_TEXTREL
                    textrel = True
    return exec_stack, textrel


def smoke(binary: str, rendered_file: str, ort_library: str) -> int:
    """Runs the real binary the way the rendered Deployment would (its ConfigMap file and its
    environment, with the registry model swapped for the bundled one and paths moved to a
    temporary directory), probes it on probes.json's paths and port, then sends SIGTERM:
    readiness must turn 503 while liveness stays 200, and the process must exit 0 within
    drain_delay + shutdown_timeout."""
    import signal
    import socket
    import subprocess
    import tempfile
    import time
    import urllib.error
    import urllib.request

    docs = [d for d in yaml.safe_load_all(Path(rendered_file).read_text()) if d]
    probes = json.loads(PROBES.read_text())
    c = container(docs)
    args = c["args"]
    config_path = args[args.index("--config") + 1]
    settings = effective_settings(docs)
    work = Path(tempfile.mkdtemp(prefix="hotserve-smoke-"))
    mount = next(m for m in c["volumeMounts"] if config_path.startswith(m["mountPath"].rstrip("/") + "/"))
    configmap = next(d for d in docs if d["kind"] == "ConfigMap")
    local_config = work / Path(config_path).name
    local_config.write_text(configmap["data"][config_path[len(mount["mountPath"].rstrip("/")) + 1 :]])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOTSERVE_", "MLFLOW_", "MODEL_URI"))}
    env.update({k: v for k, v in env_of(docs).items() if not k.startswith("MLFLOW_")})
    env.update(
        MODEL_URI=str(ROOT / "tests" / "fixtures" / "sentiment"),
        HOTSERVE_STATE_DIR=str(work / "state"),
        HOTSERVE_CACHE_DIR=str(work / "state" / "models"),
        HOTSERVE_LISTEN=f"127.0.0.1:{port}",
        ORT_DYLIB_PATH=ort_library,
        TMPDIR=str(work / "tmp"),
    )
    (work / "tmp").mkdir()
    argv = [binary] + [str(local_config) if a == config_path else a for a in args]
    log = open(work / "log", "wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return 0

    problems = []
    try:
        deadline = time.monotonic() + 60
        while status(probes["startup"]) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                problems.append(f"never ready on {probes['startup']} (exit {proc.poll()})")
                break
            time.sleep(0.2)
        if not problems:
            for kind in ("liveness", "readiness", "metrics"):
                if status(probes[kind]) != 200:
                    problems.append(f"{kind} {probes[kind]} -> {status(probes[kind])}")
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            time.sleep(0.5)
            drain = parse_duration(settings.get("drain_delay", "0"))
            if drain >= 1:
                if status(probes["readiness"]) != 503:
                    problems.append(f"readiness after SIGTERM -> {status(probes['readiness'])}, want 503")
                if status(probes["liveness"]) != 200:
                    problems.append(f"liveness while draining -> {status(probes['liveness'])}, want 200")
            budget = drain + parse_duration(settings.get("shutdown_timeout", "30s")) + 5
            try:
                code = proc.wait(timeout=budget)
            except subprocess.TimeoutExpired:
                problems.append(f"still running {budget:.0f}s after SIGTERM")
            else:
                if code != 0:
                    problems.append(f"exit status {code} after SIGTERM, want 0")
                else:
                    print(f"  ok   smoke ({Path(rendered_file).stem}): ready, probes {probes['liveness']} {probes['readiness']} "
                          f"{probes['metrics']} 200; SIGTERM -> readiness 503, exit 0 after {time.monotonic() - started:.1f}s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    output = (work / "log").read_text(errors="replace")
    shutil.rmtree(work, ignore_errors=True)
    if problems:
        print(f"  FAIL smoke ({Path(rendered_file).stem}): " + "; ".join(problems))
        print("         " + output[-2000:].replace("\n", "\n         "))
        return 1
    return 0


TESTS = [value for key, value in sorted(globals().items()) if key.startswith("test_") and callable(value)]


def main(argv: list[str]) -> int:
    if argv[:1] == ["render"]:
        yaml.safe_dump_all(render(Path(argv[1])), sys.stdout, sort_keys=False)
        return 0
    if argv[:1] == ["smoke"]:
        return smoke(*argv[1:4])
    files = dict(zip(argv[0::2], argv[1::2]))
    for name in ("base", "pinned"):
        if f"--{name}" in files:
            real = [d for d in yaml.safe_load_all(Path(files[f"--{name}"]).read_text()) if d]
            ours = render({"base": BASE, "pinned": PINNED}[name])
            if by_key(real) != by_key(ours):
                print(f"FAIL fallback renderer disagrees with kustomize on {name}", file=sys.stderr)
                return 1
            print(f"  ok   fallback renderer matches kustomize ({name}: {len(real)} objects)")
            RENDERED[name] = real
    failed = 0
    for test in TESTS:
        try:
            test()
        except AssertionError as err:
            failed += 1
            print(f"  FAIL {test.__name__}: {err}")
        except Exception as err:  # a missing key or file is a failure too, with its name
            failed += 1
            print(f"  FAIL {test.__name__}: {type(err).__name__}: {err}")
        else:
            print(f"  ok   {test.__name__}")
    print(f"deploy consistency checks: {len(TESTS) - failed} ok, {failed} failing")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
