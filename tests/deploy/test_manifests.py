#!/usr/bin/env python3
"""Consistency checks for hotserve's deployment files (deploy/), run by scripts/check-deploy.sh.

The schema checks (kubernetes-validate, systemd-analyze, hadolint) live in the shell script;
this file checks what no schema knows: that the manifests, the unit file and the container
build agree with each other and with the binary (probe paths and port, setting and variable
names, timeouts, user ids, the pinned ONNX Runtime).

    python tests/deploy/test_manifests.py                    # render with the fallback below
    python tests/deploy/test_manifests.py --base B.yaml --pinned P.yaml --prometheus M.yaml
                                             # check manifests rendered by real kustomize, and
                                             # check that the fallback renders the same objects
    python tests/deploy/test_manifests.py render DIR         # the fallback renderer alone
    python tests/deploy/test_manifests.py split RENDERED.yaml CORE.yaml CRD.yaml
                                             # objects of CRDs apart (not strictly validated)
    python tests/deploy/test_manifests.py smoke BINARY RENDERED.yaml LIBONNXRUNTIME
                                             # run the built binary as the Deployment would
    python tests/deploy/test_manifests.py image-smoke IMAGE RENDERED.yaml
                                             # run the built image with podman, likewise

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
PROMETHEUS = K8S / "overlays" / "prometheus"
OVERLAYS = {"base": BASE, "pinned": PINNED, "prometheus": PROMETHEUS}
# Objects of the Prometheus Operator's CRDs: not in kubernetes-validate's schemas, so
# scripts/check-deploy.sh leaves them out of strict validation and test_prometheus_scaling
# checks them here.
CRD_API_GROUPS = ("monitoring.coreos.com/",)
UNIT = DEPLOY / "systemd" / "hotserve.service"
NOTIFY_RELOAD = DEPLOY / "systemd" / "notify-reload.conf"
INSTALL = DEPLOY / "systemd" / "install.sh"
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
    args.update(re.findall(r"^ARG\s+(BASE_IMAGE)=(\S+)", text, re.M))
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
        RENDERED[name] = render(OVERLAYS[name])
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
    for name in OVERLAYS:
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
        assert "replicas" not in deployment["spec"], "the HPA owns the pod count: spec.replicas would reset it on every apply"
        assert container(docs)["image"].startswith("registry.example.com/ml/hotserve:")


def exported_metrics() -> dict[str, str]:
    """Metric name -> type, as src/metrics.rs writes its # TYPE headers."""
    text = (ROOT / "src" / "metrics.rs").read_text()
    found = dict(re.findall(r'"(hotserve_[a-z_]+)",\s*"(counter|gauge|histogram)"', text))
    # The per-model tables: (name, help, |m| &m.<histogram>) and (name, help, |f| f.<figure>).
    found.update((name, "histogram") for name in re.findall(r'"(hotserve_[a-z_]+)",\s*"[^"]*",\s*\|m\| &m\.', text))
    found.update((name, "gauge") for name in re.findall(r'"(hotserve_[a-z_]+)",\s*"[^"]*",\s*\|f\| f\.', text))
    assert "hotserve_in_flight_requests" in found, "could not read the metric names from src/metrics.rs"
    return found


def test_grafana_dashboard_queries_what_hotserve_exports():
    """deploy/k8s/overlays/grafana: the dashboard parses, its panels are well formed (unique
    ids, a grid position, a data source and a query each, inside the 24-column grid), its
    variables are the ones its queries use, and every metric it queries is one hotserve
    exports (a histogram through _bucket, _sum or _count)."""
    overlay = K8S / "overlays" / "grafana"
    dashboard = json.loads((overlay / "hotserve-dashboard.json").read_text())
    assert dashboard["uid"] == "hotserve" and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "model"}, variables
    metrics = exported_metrics()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    queried = set()
    for panel in dashboard["panels"]:
        where = f"panel {panel['id']} ({panel['title']})"
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, where
        assert panel["type"] in {"timeseries", "table", "stat", "gauge", "bargauge"}, where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"], f"{where} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), f"{where}: {expr}"
            for used in re.findall(r"\$(?:\{)?(\w+)", expr):
                assert used in variables or used.startswith("__"), f"{where}: unknown variable ${used}"
            for name in re.findall(r"\bhotserve_[a-z_]+", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                kind = metrics.get(name) or (metrics.get(base) if base != name else None)
                assert kind, f"{where}: {name} is not a metric hotserve exports"
                if base != name:
                    assert metrics.get(base) == "histogram" and name not in metrics, f"{where}: {name}"
                if "rate(" in expr and kind == "counter":
                    assert name.endswith("_total"), f"{where}: {name}"
                queried.add(base if base != name else name)
    for must in ("hotserve_requests_total", "hotserve_request_duration_seconds", "hotserve_model_info", "hotserve_queue_depth"):
        assert must in queried, f"the dashboard does not show {must}"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    generator = kustomization["configMapGenerator"][0]
    assert generator["files"] == ["hotserve-dashboard.json"]
    assert generator["options"]["labels"]["grafana_dashboard"] == "1", "Grafana's sidecar finds dashboards by this label"


def test_prometheus_scaling():
    docs = rendered("prometheus")
    metrics = exported_metrics()
    probes = json.loads(PROBES.read_text())
    deployment = find(docs, "Deployment", "hotserve")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    monitor = find(docs, "PodMonitor", "hotserve")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items()), "PodMonitor selector"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}, f"unexpected PodMonitor fields {set(endpoint)}"
    assert resolve_port(endpoint["port"], container(docs)["ports"]) == probes["port"]
    assert endpoint["path"] == probes["metrics"]
    hpa = find(docs, "HorizontalPodAutoscaler", "hotserve")
    pods_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics, "the prometheus overlay's HPA has no Pods metric"
    rules = yaml.safe_load((PROMETHEUS / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    served = {}
    for rule in rules:
        series = re.match(r"(hotserve_[a-z_]+)\{", rule["seriesQuery"]).group(1)
        assert metrics.get(series) == "gauge", f"adapter rule for {series}: not a gauge hotserve exports"
        assert {"namespace", "pod"} <= set(rule["resources"]["overrides"]), "per-pod metrics need namespace and pod"
        served[rule["name"]["as"]] = series
    for name in pods_metrics:
        assert name in served, f"HPA metric {name} is served by no adapter rule"
    assert "prometheus-adapter-rules.yaml" not in (PROMETHEUS / "kustomization.yaml").read_text().split("resources:")[1].split("patches:")[0]
    # The overlay adds the PodMonitor and changes the HPA's metrics, nothing else.
    base = {(d["kind"], d["metadata"]["name"]): d for d in rendered("base")}
    for d in docs:
        key = (d["kind"], d["metadata"]["name"])
        if key == ("HorizontalPodAutoscaler", "hotserve"):
            assert {**d["spec"], "metrics": None} == {**base[key]["spec"], "metrics": None}
        elif key != ("PodMonitor", "hotserve"):
            assert normalize(d) == normalize(base[key]), f"the prometheus overlay changes {key}"


def test_systemd_unit_matches_the_binary():
    d = unit_directives()
    expect = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/usr/local/bin/hotserve serve --config /etc/hotserve/hotserve.yaml",
        "ExecReload": "/usr/local/libexec/hotserve-reload $MAINPID /etc/hotserve/hotserve.yaml",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "2",
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


def test_systemd_reload_and_install():
    """systemd < 253: ExecReload= runs hotserve-reload (POST /admin/reload?wait=true); >= 253:
    install.sh adds notify-reload.conf (Type=notify-reload, ExecReload= cleared). install.sh
    installs every file the unit and the drop-in name, where they name it."""
    d = unit_directives()
    helper = d["ExecReload"][0].split()[0]
    install = INSTALL.read_text()
    assert f'"$checkout/deploy/systemd/hotserve-reload" {helper}' in install, f"install.sh does not install {helper}"
    assert "/etc/systemd/system/hotserve.service.d/notify-reload.conf" in install
    assert re.search(r'-ge 253 \]', install), "install.sh picks notify-reload.conf by the systemd version"
    dropin: dict[str, list[str]] = {}
    for line in NOTIFY_RELOAD.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            dropin.setdefault(key, []).append(value)
    assert dropin == {"Type": ["notify-reload"], "ExecReload": [""]}, dropin
    helper_text = (DEPLOY / "systemd" / "hotserve-reload").read_text()
    assert "/admin/reload?wait=true" in helper_text and "HOTSERVE_ADMIN_TOKEN" in helper_text
    assert "HOTSERVE_ADMIN_TOKEN" in known_variables() and "HOTSERVE_LISTEN" in known_variables()
    assert '"/admin/reload"' in (ROOT / "src" / "route.rs").read_text(), "the admin route is gone"
    admin = (ROOT / "src" / "http" / "routes" / "admin.rs").read_text()
    assert 'query_value(query, "wait")' in admin, "the admin route's ?wait=true is gone"
    assert "MONOTONIC_USEC=" in (ROOT / "src" / "sdnotify.rs").read_text(), "Type=notify-reload needs MONOTONIC_USEC in RELOADING=1"
    for path in ("/usr/local/bin/hotserve", "/usr/local/lib/onnxruntime/libonnxruntime.so", "/etc/systemd/system/hotserve.service"):
        assert path in install, f"install.sh does not install {path}"
    readme = (DEPLOY / "systemd" / "README.md").read_text()
    assert "deploy/systemd/install.sh" in readme, "the README's install steps are install.sh"


def test_onnxruntime_pin_is_consistent():
    facts = containerfile_facts()
    args = facts["args"]
    pinned = re.search(r"^onnxruntime==(\S+)", (ROOT / "scripts" / "requirements-runtime.txt").read_text(), re.M)
    assert pinned and args["ORT_VERSION"] == pinned.group(1), "Containerfile and requirements-runtime.txt pin different ONNX Runtimes"
    assert args["ORT_WHEEL"].startswith(f"onnxruntime-{args['ORT_VERSION']}-cp311-cp311-manylinux")
    assert re.fullmatch(r"[0-9a-f]{64}", args["ORT_WHEEL_SHA256"]) and re.fullmatch(r"[0-9a-f]{64}", args["ORT_LIB_SHA256"])
    readme = (DEPLOY / "systemd" / "README.md").read_text()
    assert args["ORT_WHEEL_SHA256"] in readme and f"onnxruntime=={args['ORT_VERSION']}" in readme
    assert facts["from"] == ["${BASE_IMAGE}"] and args["BASE_IMAGE"] == "debian:bookworm-slim", (
        "deploy/Containerfile: FROM ${BASE_IMAGE}, default debian:bookworm-slim (CI builds it on a local base)"
    )
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
            # Prometheus' own linter on what a scrape gets (check-deploy.sh sets PROMTOOL).
            promtool = os.environ.get("PROMTOOL")
            if promtool:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{probes['metrics']}", timeout=5) as r:
                    exposition = r.read()
                lint = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True)
                if lint.returncode != 0:
                    problems.append(f"promtool check metrics: {(lint.stdout + lint.stderr).decode().strip()}")
                else:
                    print(f"  ok   promtool check metrics: {probes['metrics']} is clean ({exposition.count(b'# TYPE ')} families)")
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


def podman_run_args(docs: list[dict], work: Path, model_dir: Path, port: int) -> tuple[list[str], list[str]]:
    """`podman run` options that run the image as the rendered Deployment's pod would: its user,
    read-only root file system (and nothing else writable but its volumes), dropped
    capabilities, no privilege escalation, its ConfigMap at its mount path, its environment,
    its emptyDir volumes (fresh world-writable directories, like an emptyDir) and its args. The registry
    model is replaced by the bundled one, mounted read-only; MLflow variables are left out.
    Returns (options, container arguments)."""
    spec = pod_spec(find(docs, "Deployment", "hotserve"))
    c = container(docs)
    pod_sc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    options = ["--user", f"{user}:{group}"]
    if sc.get("readOnlyRootFilesystem"):
        options += ["--read-only", "--read-only-tmpfs=false"]
    if sc.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    options += [f"--cap-drop={cap}" for cap in sc.get("capabilities", {}).get("drop", [])]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in c["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            configmap = find(docs, "ConfigMap", volume["configMap"]["name"])
            directory = work / mount["name"]
            directory.mkdir(parents=True, exist_ok=True)
            for key, text in configmap["data"].items():
                (directory / key).write_text(text)
            options += ["-v", f"{directory}:{mount['mountPath']}:ro"]
        elif "emptyDir" in volume:
            # An emptyDir is a fresh host directory, mode 0777. (podman's --tmpfs takes the
            # image directory's mode and owner instead: not what a pod gets.)
            directory = work / mount["name"]
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o777)
            options += ["-v", f"{directory}:{mount['mountPath']}"]
        else:
            raise SystemExit(f"podman-run: volume {mount['name']}: only configMap and emptyDir are supported")
    for name, value in env_of(docs).items():
        if not name.startswith("MLFLOW_") and name != "MODEL_URI":
            options += ["-e", f"{name}={value}"]
    options += ["-e", "MODEL_URI=/models/sentiment", "-v", f"{model_dir}:/models/sentiment:ro"]
    options += ["-p", f"127.0.0.1:{port}:{container_port(c)}"]
    return options, list(c.get("args", []))


def container_port(c: dict) -> int:
    return resolve_port("http", c["ports"])


def image_smoke(image: str, rendered_file: str) -> int:
    """Runs the built image with podman as the rendered Deployment runs it (podman_run_args)
    and checks: /health/ready 200 (start-to-ready time measured from `podman run`), /predict
    answers, the process runs as the Deployment's user, the root file system is read-only,
    and SIGTERM ends it with exit status 0 within terminationGracePeriodSeconds (readiness 503
    while draining). Prints the image size."""
    import socket
    import subprocess
    import tempfile
    import time
    import urllib.error
    import urllib.request

    docs = [d for d in yaml.safe_load_all(Path(rendered_file).read_text()) if d]
    probes = json.loads(PROBES.read_text())
    spec = pod_spec(find(docs, "Deployment", "hotserve"))
    settings = effective_settings(docs)
    grace = spec["terminationGracePeriodSeconds"]
    user = str(spec["securityContext"]["runAsUser"])
    work = Path(tempfile.mkdtemp(prefix="hotserve-image-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options, args = podman_run_args(docs, work, ROOT / "tests" / "fixtures" / "sentiment", port)
    name = f"hotserve-image-smoke-{os.getpid()}"

    def podman(*argv: str, check: bool = True) -> str:
        done = subprocess.run(["podman", *argv], capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout.strip()

    def request(path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"content-type": "application/json"} if body is not None else {}
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except OSError:
            return 0, b""

    problems: list[str] = []
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image))
    print(f"  ok   image {image}: {size / 1e6:.1f} MB")
    print(f"       podman run {' '.join(options)} {image} {' '.join(args)}")
    started = time.monotonic()
    try:
        podman("run", "-d", "--name", name, *options, image, *args)
        deadline = started + 60
        while request(probes["readiness"])[0] != 200:
            state = podman("inspect", "--format", "{{.State.Status}}", name, check=False)
            if state not in ("running", "created", "configured") or time.monotonic() > deadline:
                raise RuntimeError(f"never ready on {probes['readiness']} (container {state})")
            time.sleep(0.1)
        ready = time.monotonic() - started
        print(f"  ok   {probes['readiness']} 200 {ready:.2f}s after podman run (start-to-ready)")
        status, body = request("/predict", b'{"text": "I love this"}')
        if status == 200 and b"label" in body:
            print(f"  ok   POST /predict 200: {body.decode()[:120]}")
        else:
            problems.append(f"POST /predict -> {status} {body[:200]!r}")
        uid = podman("exec", name, "sh", "-c", "stat -c %u /proc/1 && id -u")
        uids = set(uid.split())
        if uids == {user}:
            print(f"  ok   hotserve runs as uid {user} (runAsUser of the Deployment)")
        else:
            problems.append(f"process uid {sorted(uids)}, the Deployment says {user}")
        readonly = podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name)
        write = subprocess.run(["podman", "exec", "--user", "0", name, "touch", "/usr/local/bin/x"],
                               capture_output=True, text=True)
        if readonly == "true" and write.returncode != 0 and "Read-only file system" in write.stderr:
            print("  ok   root file system read-only (even root in the container: \"Read-only file system\")")
        else:
            problems.append(f"root file system writable? ReadonlyRootfs={readonly}, touch: {write.returncode} {write.stderr.strip()}")
        for path in (settings["state_dir"], "/tmp"):
            probe = subprocess.run(["podman", "exec", name, "touch", f"{path}/.w"], capture_output=True, text=True)
            if probe.returncode != 0:
                problems.append(f"{path} is not writable for uid {user}: {probe.stderr.strip()}")
        cached = podman("exec", name, "sh", "-c", f"find {settings['cache_dir']} -type f | wc -l")
        print(f"  ok   model cache {settings['cache_dir']} (emptyDir): {cached} files")
        podman("kill", "--signal", "TERM", name)
        term = time.monotonic()
        time.sleep(0.5)
        drain = parse_duration(settings.get("drain_delay", "0"))
        if drain >= 1 and request(probes["readiness"])[0] != 503:
            problems.append("readiness is not 503 while draining after SIGTERM")
        waited = subprocess.run(["timeout", str(grace), "podman", "wait", name], capture_output=True, text=True)
        elapsed = time.monotonic() - term
        code = waited.stdout.strip()
        if waited.returncode == 0 and code == "0":
            print(f"  ok   SIGTERM: readiness 503 while draining, exit 0 after {elapsed:.1f}s "
                  f"(terminationGracePeriodSeconds {grace})")
        else:
            problems.append(f"after SIGTERM: exit status {code or '?'} after {elapsed:.1f}s (grace {grace}s)")
    except RuntimeError as err:
        problems.append(str(err))
    finally:
        logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        for problem in problems:
            print(f"  FAIL image: {problem}")
        print("         " + (logs.stdout + logs.stderr)[-3000:].replace("\n", "\n         "))
        return 1
    return 0


TESTS = [value for key, value in sorted(globals().items()) if key.startswith("test_") and callable(value)]


def main(argv: list[str]) -> int:
    if argv[:1] == ["render"]:
        yaml.safe_dump_all(render(Path(argv[1])), sys.stdout, sort_keys=False)
        return 0
    if argv[:1] == ["split"]:
        docs = [d for d in yaml.safe_load_all(Path(argv[1]).read_text()) if d]
        crd = [d for d in docs if d["apiVersion"].startswith(CRD_API_GROUPS)]
        yaml.safe_dump_all([d for d in docs if d not in crd], open(argv[2], "w"), sort_keys=False)
        yaml.safe_dump_all(crd, open(argv[3], "w"), sort_keys=False)
        for d in crd:
            print(f"{d['kind']}/{d['metadata']['name']} ({d['apiVersion']})")
        return 0
    if argv[:1] == ["smoke"]:
        return smoke(*argv[1:4])
    if argv[:1] == ["image-smoke"]:
        return image_smoke(*argv[1:3])
    files = dict(zip(argv[0::2], argv[1::2]))
    for name in OVERLAYS:
        if f"--{name}" in files:
            real = [d for d in yaml.safe_load_all(Path(files[f"--{name}"]).read_text()) if d]
            ours = render(OVERLAYS[name])
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
