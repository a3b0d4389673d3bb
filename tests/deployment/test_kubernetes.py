"""deploy/kubernetes/: valid against the Kubernetes schemas (offline), and the topology of
docs/DEPLOYMENT.md, "Kubernetes". No cluster is needed (none is reachable here)."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.platform import REPO

MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
# The oldest release with gRPC probes (GA in 1.27) still supported, and the newest schemas here.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def container(workload: dict) -> dict:
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def component(selector: dict) -> str:
    return selector.get("matchLabels", {}).get("app.kubernetes.io/component", "")


def flag(command: list[str], name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}="))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_validates_strictly(path, version):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_topology_has_every_part():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in documents()}
    assert ("Deployment", "platform-gateway") in kinds and ("Service", "platform-gateway") in kinds
    assert {("DaemonSet", "platform-supervisor-python"), ("DaemonSet", "platform-supervisor-java")} <= kinds
    assert ("Job", "platform-migrate") in kinds
    externals = {d["metadata"]["name"] for d in by_kind("Service").values() if d["spec"].get("type") == "ExternalName"}
    assert externals == {"platform-postgres", "platform-redis"}
    assert all(doc["metadata"].get("namespace", "plugin-platform") == "plugin-platform" for _, doc in documents())


def test_the_gateways_find_every_supervisor_pod_through_headless_services():
    config = by_kind("ConfigMap")["platform-config"]["data"]
    services = by_kind("Service")
    for entry in config["SUPERVISORS"].split(","):
        runtime, _, address = entry.partition("=")
        assert address.startswith("dns:")
        name, _, port = address.removeprefix("dns:").rpartition(":")
        service = services[name.split(".")[0]]
        assert service["spec"]["clusterIP"] == "None"
        daemonset = by_kind("DaemonSet")[f"platform-supervisor-{runtime}"]
        command = container(daemonset)["command"]
        assert flag(command, "listen") == f"0.0.0.0:{port}" and flag(command, "runtime") == runtime
        assert service["spec"]["selector"].items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()


def test_supervisors_speak_mutual_tls_and_are_probed_on_their_health_port():
    for daemonset in by_kind("DaemonSet").values():
        main = container(daemonset)
        command = main["command"]
        assert "--allow-remote" in command  # which runsupervisor accepts only with TLS configured
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert {"SUPERVISOR_TLS_CERT_FILE", "SUPERVISOR_TLS_KEY_FILE", "SUPERVISOR_TLS_CA_FILE"} <= env.keys()
        health_port = int(flag(command, "health-listen").rpartition(":")[2])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert main[probe]["grpc"]["port"] == health_port, probe
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        volumes = {v["name"]: v for v in daemonset["spec"]["template"]["spec"]["volumes"]}
        assert volumes[mounts["/etc/platform/tls"]]["secret"]["secretName"] == "platform-supervisor-tls"


def test_the_gateway_is_ready_by_its_health_endpoint_and_runs_unprivileged():
    gateway = by_kind("Deployment")["platform-gateway"]
    main = container(gateway)
    ready = main["readinessProbe"]["httpGet"]
    assert ready["path"] == "/api/v1/health"
    allowed = by_kind("ConfigMap")["platform-config"]["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    assert {h["value"] for h in ready["httpHeaders"] if h["name"] == "Host"} <= set(allowed)
    security = {**gateway["spec"]["template"]["spec"]["securityContext"], **main["securityContext"]}
    assert (
        security["runAsNonRoot"] and security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    )


def test_only_gateways_reach_the_supervisors_api_and_relay_ports():
    policies = by_kind("NetworkPolicy")
    assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    supervisor_policies = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == "supervisor"
        and "Ingress" in p["spec"]["policyTypes"]
    ]
    [policy] = supervisor_policies
    [rule] = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}}}]
    allowed = {p["port"] for p in rule["ports"]}
    for daemonset in by_kind("DaemonSet").values():
        command = container(daemonset)["command"]
        served = {int(flag(command, name).rpartition(":")[2]) for name in ("listen", "relay-listen")}
        assert served <= allowed, daemonset["metadata"]["name"]


def test_secrets_come_from_secret_volumes_never_from_literal_values():
    config = by_kind("ConfigMap")["platform-config"]["data"]
    file_variables = {k: v for k, v in config.items() if k.endswith("_FILE")}
    assert {"DATABASE_URL_FILE", "DJANGO_SECRET_KEY_FILE", "SUPERVISOR_SECRET_FILE"} <= file_variables.keys()
    for workload in [*by_kind("Deployment").values(), *by_kind("DaemonSet").values(), *by_kind("Job").values()]:
        main = container(workload)
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        secret_mounts = [m["mountPath"] for m in main["volumeMounts"] if "secret" in volumes[m["name"]]]
        for variable, path in file_variables.items():
            assert any(path.startswith(mount + "/") for mount in secret_mounts), (
                workload["metadata"]["name"],
                variable,
            )
        for env in main.get("env", []):
            assert "SECRET" not in env["name"] or env["name"].endswith("_FILE"), env
