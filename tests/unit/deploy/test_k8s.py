"""deploy/k8s and the scaled docker-compose profile: the manifests validate against the Kubernetes
schemas (offline, kubernetes-validate's bundled copies), both kustomize overlays build, and what
the manifests say about the service (probe paths, port, drain timing, threads, memory) agrees
with the service's own code: its route table, its CLI defaults and its Settings class.
"""
from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.app import create_app
from service.settings import Settings, memory_bound_bytes
from spancli import main as cli
from spancore.testing import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
KUBERNETES_VERSION = "1.32"   # the schemas manifests are checked against; kubectl here is v1.32
GiB = 1024 ** 3

kubectl = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(kubectl is None, reason="kubectl is not installed (kustomize builds skipped)")


def _documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def build(overlay: str) -> list[dict]:
    done = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return _documents(done.stdout)


def one(documents: list[dict], kind: str) -> dict:
    [found] = [d for d in documents if d["kind"] == kind]
    return found


def plain_manifests() -> list[Path]:
    """Complete manifests (kustomizations and overlay patches are not objects on their own)."""
    return sorted(p for p in [*K8S.glob("base/*.yaml"), *K8S.glob("optional/*.yaml")]
                  if p.name != "kustomization.yaml")


def validate(document: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", plain_manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_validates_against_the_kubernetes_schema(path):
    documents = _documents(path.read_text())
    assert documents
    for document in documents:
        validate(document)


def test_a_wrong_manifest_is_refused():
    """The validator is not a rubber stamp: a misspelt field and a wrong type both fail."""
    import kubernetes_validate

    deployment = _documents((K8S / "base" / "deployment.yaml").read_text())[0]
    deployment["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    deployment = _documents((K8S / "base" / "deployment.yaml").read_text())[0]
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "forty"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates(overlay):
    documents = build(overlay)
    assert sorted(d["kind"] for d in documents) == sorted(
        ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"])
    for document in documents:
        validate(document)
    deployment = one(documents, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selects = lambda selector: selector.items() <= pod_labels.items()  # noqa: E731
    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(one(documents, "Service")["spec"]["selector"])
    assert selects(one(documents, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    target = one(documents, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def probe_routes(app) -> dict[str, str]:
    """The health endpoints' paths, by endpoint name, as the app routes them (routers included)."""
    return {name: str(app.url_path_for(name)) for name in ("ready", "live")}


def _container(documents: list[dict]) -> dict:
    [container] = one(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _settings_in(container: dict, monkeypatch) -> Settings:
    """The Settings the container's process would read: its SPAN_* env over the code's defaults."""
    for name in list(os.environ):
        if name.startswith("SPAN_"):
            monkeypatch.delenv(name)
    for variable in container.get("env", []):
        if variable["name"].startswith("SPAN_"):
            monkeypatch.setenv(variable["name"], variable["value"])
    return Settings()


def _bytes(quantity: str) -> float:
    units = {"Ki": 1024, "Mi": 1024 ** 2, "Gi": GiB, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([KMG]i)?", quantity).groups()
    return float(number) * units[unit or ""]


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_port_and_drain_match_the_service(overlay, monkeypatch):
    documents = build(overlay)
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    container = _container(documents)
    settings = _settings_in(container, monkeypatch)

    # Probe paths are the service's own routes (by endpoint name, as the app resolves them).
    routes = probe_routes(create_app(settings))
    assert container["startupProbe"]["httpGet"]["path"] == routes["ready"]   # warmed up = ready
    assert container["readinessProbe"]["httpGet"]["path"] == routes["ready"]
    assert container["livenessProbe"]["httpGet"]["path"] == routes["live"]

    # One port everywhere: the command's --port, the named container port the probes and the
    # Service use, and `span serve`'s default (what the Dockerfile's `make serve` listens on).
    [port] = container["ports"]
    command = container["command"]
    assert command[:2] == [".venv/bin/span", "serve"]
    assert int(command[command.index("--port") + 1]) == port["containerPort"]
    assert port["containerPort"] == inspect.signature(cli.serve).parameters["port"].default.default
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]
    assert one(documents, "Service")["spec"]["ports"][0]["targetPort"] == port["name"]

    # Shutdown: preStop, then SIGTERM, the listener's drain delay and the in-flight grace must
    # all fit in the termination grace period, with at most 15 s to spare.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    needed = float(pre_stop[1]) + settings.drain_delay_s + settings.shutdown_grace_s
    assert needed <= pod["terminationGracePeriodSeconds"] <= needed + 15

    # ORT threads = the CPU limit (ORT would otherwise count the node's cores).
    limits = container["resources"]["limits"]
    assert settings.intra_op_threads == int(limits["cpu"])
    # The memory limit holds the service's stated worst case under these settings (the working
    # size's arena included: a default that grows it must grow the limit too), and the request
    # holds what one large photo takes (the arena at full size plus a 12 MP photo in flight).
    assert memory_bound_bytes(settings) <= _bytes(limits["memory"])
    one_large_photo = memory_bound_bytes(settings.model_copy(update={
        "max_body_bytes_in_flight": 0, "max_pixels_in_flight": 12_000_000, "max_pixels": 12_000_000}))
    assert one_large_photo <= _bytes(container["resources"]["requests"]["memory"]) <= _bytes(limits["memory"])

    # Other secret settings: an optional Secret read as SPAN_* variables.
    assert {"secretRef": {"name": "span-secrets", "optional": True}} in container["envFrom"]


def _image_api_keys_file() -> str:
    """Where the Docker image reads its API keys (the Dockerfile's ENV SPAN_API_KEYS_FILE)."""
    [path] = re.findall(r"^ENV SPAN_API_KEYS_FILE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    return path


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_keys_secret_is_mounted_where_the_image_reads_it(overlay):
    """The image will not start without its keys file: the Deployment mounts the Secret
    `span-api-keys` (key `span_api_keys`) as that very file, and does not point elsewhere."""
    documents = build(overlay)
    pod = one(documents, "Deployment")["spec"]["template"]["spec"]
    container = _container(documents)
    keys_file = Path(_image_api_keys_file())
    assert not any(v["name"] == "SPAN_API_KEYS_FILE" for v in container.get("env", []))
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == str(keys_file.parent)]
    assert mount.get("readOnly") is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "span-api-keys"
    assert volume["secret"]["items"] == [{"key": "span_api_keys", "path": keys_file.name}]
    assert not volume["secret"].get("optional", False)   # no keys, no pod: never an open service


@needs_kubectl
def test_gpu_overlay_asks_for_a_gpu_and_refuses_to_serve_from_the_cpu(monkeypatch):
    container = _container(build("gpu"))
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith(":gpu")
    assert _settings_in(container, monkeypatch).providers == ["CUDAExecutionProvider"]
    cpu = _container(build("cpu"))
    assert "nvidia.com/gpu" not in cpu["resources"]["limits"] and cpu["image"].endswith(":cpu")


def test_scaled_compose_profile_balances_health_checked_replicas():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    replicas = sorted(n for n, s in compose.items() if "scaled" in s.get("profiles", []) and n != "span-proxy")
    assert len(replicas) >= 2
    proxy = compose["span-proxy"]
    assert "scaled" in proxy["profiles"] and set(proxy["depends_on"]) == set(replicas)
    [mount] = proxy["volumes"]
    caddyfile = (ROOT / mount.split(":")[0]).read_text()
    upstreams = re.search(r"reverse_proxy ([^{]+)\{", caddyfile).group(1).split()
    port = inspect.signature(cli.serve).parameters["port"].default.default
    assert upstreams == [f"{name}:{port}" for name in replicas]
    routes = probe_routes(create_app(Settings()))
    assert re.search(r"^\s*health_uri (\S+)$", caddyfile, re.M).group(1) == routes["ready"]
    for name in replicas:   # each replica keeps the stop grace and its own container health check
        assert compose[name]["stop_grace_period"] and routes["ready"] in " ".join(compose[name]["healthcheck"]["test"])
        # ... and its API keys: the secret, at the file the image reads
        assert "span_api_keys" in compose[name]["secrets"]
        assert compose[name]["environment"]["SPAN_API_KEYS_FILE"] == _image_api_keys_file()
