"""deploy/k8s: the manifests against the real Kubernetes schemas, and against what they describe.

No cluster here, so each object is checked with kubernetes-validate: the upstream OpenAPI schemas it bundles per
Kubernetes version, in strict mode (an unknown or misspelt field is an error, as ``kubectl apply`` reports it). Then
what no schema knows: the probes hit routes the app serves, the grace period covers the shutdown bound, every
SLOTSERVE_* variable is a setting with a value it accepts, the image's user, the ingress's hash variable is the one
the nginx maps define (their text is deploy/nginx/client-hash.conf's), and the kustomization lists every manifest.
"""

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from app.api.app import CLOSE_TIMEOUT_S, create_app
from app.settings import MIB, Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
EXAMPLE_SECRET = "secret.example.yaml"
MANIFESTS = sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
# the oldest Kubernetes these manifests target (policy/v1 PDBs, networking.k8s.io/v1 Ingresses are older) and the
# newest the checker knows
VERSIONS = ("1.28", kubernetes_validate.latest_version())
SHUTDOWN_MARGIN_S = 5  # beyond preStop + requests + freeing the slots: the last key flush, closing the database
ANNOTATION = "nginx.ingress.kubernetes.io/"


def docs(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc is not None]


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for file in MANIFESTS for doc in docs(file)
             if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def container() -> dict[str, Any]:
    (only,) = one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return only


def env() -> dict[str, dict[str, Any]]:
    return {var["name"]: var for var in container()["env"]}


def validate(obj: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(name: str, version: str) -> None:
    objects = docs(name)
    assert objects, name
    for obj in objects:
        validate(obj, version)


def _misspelt(obj: dict) -> None:
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"


def _port_as_text(obj: dict) -> None:
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"


def _probe_without_handler(obj: dict) -> None:
    obj["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].pop("port")


@pytest.mark.parametrize("damage", [_misspelt, _port_as_text, _probe_without_handler])
def test_the_schema_check_rejects_a_broken_manifest(damage) -> None:
    broken = copy.deepcopy(one("StatefulSet"))
    damage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, VERSIONS[-1])


def test_the_schema_check_rejects_numbers_where_kubernetes_wants_strings() -> None:
    config = copy.deepcopy(one("ConfigMap", "ingress-nginx-controller"))
    config["data"]["proxy-body-size"] = 64  # a ConfigMap's values are strings
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(config, VERSIONS[-1])
    ingress = copy.deepcopy(one("Ingress"))
    ingress["metadata"]["annotations"][ANNOTATION + "proxy-read-timeout"] = 120  # and so are annotations
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(ingress, VERSIONS[-1])


def test_the_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(set(MANIFESTS) - {EXAMPLE_SECRET})
    assert "namespace" not in kustomization  # it would move the controller's ConfigMap out of ingress-nginx
    assert EXAMPLE_SECRET in MANIFESTS


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_kustomize_renders_the_same_objects_and_they_validate() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    objects = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc is not None]
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    expected = {(doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace"))
                for name in listed for doc in docs(name)}
    assert {(doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace")) for doc in objects} == expected
    for obj in objects:
        validate(obj, VERSIONS[-1])
    (statefulset,) = [doc for doc in objects if doc["kind"] == "StatefulSet"]
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["image"] == container()["image"]


@pytest.mark.anyio
async def test_the_probes_hit_the_health_routes_the_app_serves() -> None:
    probes = {kind: container()[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    assert all(probe["port"] == "http" for probe in probes.values())
    app = create_app(Settings(state="unused.db"))  # no lifespan: as the server is before its registry exists
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
        assert (await http.get(probes["livenessProbe"]["path"])).status_code == 200  # up: alive
        assert (await http.get(probes["readinessProbe"]["path"])).status_code == 503  # not ready: no traffic yet


def test_the_grace_period_covers_prestop_and_the_shutdown_bound() -> None:
    pod = one("StatefulSet")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    pre_stop_s = float(command[1])
    assert 1 <= pre_stop_s <= 15  # long enough for the ingress to drop the pod, short enough not to stall drains
    shutdown_s = float(env()["SLOTSERVE_SHUTDOWN_TIMEOUT_S"]["value"])
    assert pod["terminationGracePeriodSeconds"] >= pre_stop_s + shutdown_s + CLOSE_TIMEOUT_S + SHUTDOWN_MARGIN_S


def test_every_slotserve_variable_is_a_setting_with_a_value_it_accepts(monkeypatch) -> None:
    variables = {name: var for name, var in env().items() if name.startswith("SLOTSERVE_")}
    assert {name.removeprefix("SLOTSERVE_").lower() for name in variables} <= set(Settings.model_fields)
    for name, var in variables.items():
        if "value" in var:
            monkeypatch.setenv(name, var["value"])
    references = {name: var["valueFrom"]["secretKeyRef"] for name, var in variables.items() if "valueFrom" in var}
    assert set(references) == {"SLOTSERVE_STATE", "SLOTSERVE_ADMIN_KEY"}
    assert references["SLOTSERVE_ADMIN_KEY"].get("optional") is True  # keys in the database work without it
    monkeypatch.setenv("SLOTSERVE_STATE", "postgresql://slotserve@db/slotserve")
    settings = Settings()
    assert settings.host == "0.0.0.0" and settings.log_format == "json" and settings.device == "gpu"
    assert settings.request_memory_mb is not None  # the default would read the node's RAM, not the pod's limit


def test_the_example_secret_has_the_keys_the_pods_read_and_a_key_the_server_refuses() -> None:
    secret = one("Secret")
    for var in ("SLOTSERVE_STATE", "SLOTSERVE_ADMIN_KEY"):
        ref = env()[var]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    assert secret["stringData"]["state-url"].startswith("postgresql://")
    with pytest.raises(ValueError, match="at least 32"):  # the placeholder can never end up serving
        Settings(admin_key=secret["stringData"]["admin-key"])


def test_the_container_matches_the_image() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+)", dockerfile).group(1))
    assert one("StatefulSet")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
    gpu_tag = re.search(r"--build-arg VARIANT=gpu -t (\S+)", dockerfile).group(1)
    assert container()["image"] == gpu_tag
    images = yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]
    name, tag = gpu_tag.split(":")
    assert [(image["name"], image["newTag"]) for image in images] == [(name, tag)]
    (port,) = container()["ports"]
    assert port["name"] == "http" and port["containerPort"] == int(env()["SLOTSERVE_PORT"]["value"])
    assert re.search(rf"^EXPOSE {port['containerPort']}$", dockerfile, re.M)


def test_one_gpu_and_the_writable_places() -> None:
    assert container()["resources"]["limits"]["nvidia.com/gpu"] == 1
    pod = one("StatefulSet")["spec"]["template"]["spec"]
    mounts = {mount["mountPath"]: mount for mount in container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    models = mounts[env()["SLOTSERVE_MODEL_DIR"]["value"]]
    assert models["readOnly"] is True
    claim = volumes[models["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    assert one("PersistentVolumeClaim", claim["claimName"])["spec"]["accessModes"] == ["ReadOnlyMany"]
    # a read-only root file system leaves /tmp (pins, unpacked weights) as the one writable place
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    tmp = volumes[mounts["/tmp"]["name"]]["emptyDir"]
    slots = int(env()["SLOTSERVE_SLOTS"]["value"]) * int(env()["SLOTSERVE_SLOT_MEMORY_MB"]["value"]) * MIB
    assert int(tmp["sizeLimit"].removesuffix("Gi")) << 30 > slots  # every slot's pinned copy, and one more


def test_the_services_pdb_and_statefulset_select_the_same_pods() -> None:
    statefulset = one("StatefulSet")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    headless = one("Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel" and statefulset["spec"]["replicas"] == 3
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    for selector in (headless["spec"]["selector"], statefulset["spec"]["selector"]["matchLabels"],
                     pdb["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()


def test_the_ingress_hashes_on_the_variable_the_snippet_defines() -> None:
    snippet = one("ConfigMap", "ingress-nginx-controller")["data"]["http-snippet"]
    assert snippet.rstrip("\n") == (ROOT / "deploy" / "nginx" / "client-hash.conf").read_text().rstrip("\n")
    defined = re.findall(r"^map\s+\S+\s+\$(\w+)\s*\{", snippet, re.M)
    ingress = one("Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations[ANNOTATION + "upstream-hash-by"] == f"${defined[-1]}" == "$slotserve_client"
    assert ANNOTATION + "service-upstream" not in annotations  # the hash must pick the pod, not kube-proxy
    assert ingress["spec"]["ingressClassName"] == "nginx"
    # the Ingress's backend is the ClusterIP Service, on the port that reaches the container's
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    service = one("Service", backend["name"])
    assert service["spec"].get("clusterIP") != "None"
    assert [port["targetPort"] for port in service["spec"]["ports"] if port["name"] == backend["port"]["name"]] == [
        container()["ports"][0]["name"]]


def test_the_ingress_limits_match_the_server() -> None:
    annotations = one("Ingress")["metadata"]["annotations"]
    defaults = Settings(state="unused.db")
    assert annotations[ANNOTATION + "proxy-body-size"] == f"{defaults.max_body_mb}m"  # nginx's m is MiB too
    assert float(annotations[ANNOTATION + "proxy-read-timeout"]) > defaults.busy_timeout_s
    assert annotations[ANNOTATION + "proxy-next-upstream"].split() == ["error", "timeout"]
    assert int(annotations[ANNOTATION + "proxy-next-upstream-tries"]) >= 2
