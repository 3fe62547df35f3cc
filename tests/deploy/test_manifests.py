"""The Kubernetes manifests: each overlay renders, every resource validates against its schema,
and every Deployment has what running in production takes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.project import (
    OVERLAYS,
    Resource,
    load_compose,
    name,
    of_kind,
    parse_dockerfile,
    rendered_overlay,
    validate_resource,
)
from tests.support.references import REFERENCE_SECRET
from twoway.topology import OUTBOUND_BULK_QUEUE, OUTBOUND_QUEUE, adapter_queue
from twoway_ingress.settings import IngressSettings

pytestmark = pytest.mark.deploy

PUBLIC_SERVICES = {"twoway-ingress", "twoway-api"}
PRE_STOP_SECONDS = 5
SHUTDOWN_SECONDS = 10
"""aiohttp's shutdown timeout in twoway.service.run_service."""


def every_resource() -> list[Any]:
    return [
        pytest.param(resource, id=f"{overlay}-{resource['kind']}-{name(resource)}")
        for overlay in OVERLAYS
        for resource in rendered_overlay(overlay)
    ]


def every_deployment() -> list[Any]:
    return [
        pytest.param(overlay, deployment, id=f"{overlay}-{name(deployment)}")
        for overlay in OVERLAYS
        for deployment in of_kind(rendered_overlay(overlay), "Deployment")
    ]


def container(deployment: Resource) -> dict[str, Any]:
    [app] = deployment["spec"]["template"]["spec"]["containers"]
    value: dict[str, Any] = app
    return value


def env(deployment: Resource) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container(deployment)["env"]}


def config_value(overlay: str, key: str) -> str:
    [config] = [
        c for c in of_kind(rendered_overlay(overlay), "ConfigMap") if key in c.get("data", {})
    ]
    value: str = config["data"][key]
    return value


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    matches = selector.get("matchLabels", {})
    expressions = selector.get("matchExpressions", [])
    return all(labels.get(key) == value for key, value in matches.items()) and all(
        expression["operator"] == "In" and labels.get(expression["key"]) in expression["values"]
        for expression in expressions
    )


@pytest.mark.parametrize("resource", every_resource())
def test_every_resource_is_valid_against_its_schema(resource: Resource) -> None:
    validate_resource(resource)


Mistake = Callable[[Resource], object]


@pytest.mark.parametrize(
    ("kind", "mistake", "error"),
    [
        pytest.param(
            "Deployment",
            lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriod=30),
            kubernetes_validate.ValidationError,
            id="kubernetes-unknown-field",
        ),
        pytest.param(
            "ScaledObject",
            lambda d: d["spec"].update(minReplicas=0),
            jsonschema.ValidationError,
            id="keda-unknown-field",
        ),
        pytest.param(
            "RabbitmqCluster",
            lambda d: d["spec"].update(replicas="three"),
            jsonschema.ValidationError,
            id="rabbitmq-wrong-type",
        ),
        pytest.param(
            "RabbitmqCluster",
            lambda d: d["spec"]["affinity"]["podAntiAffinity"][
                "preferredDuringSchedulingIgnoredDuringExecution"
            ][0]["podAffinityTerm"].update(topologyKeys=["zone"]),
            jsonschema.ValidationError,
            id="rabbitmq-misspelt-affinity",
        ),
        pytest.param(
            "RabbitmqCluster",
            lambda d: d["spec"]["rabbitmq"].update(additionalConfig="x" * 2001),
            jsonschema.ValidationError,
            id="rabbitmq-config-too-long",
        ),
        pytest.param(
            "MongoDBCommunity",
            lambda d: d["spec"].pop("users"),
            jsonschema.ValidationError,
            id="mongodb-missing-field",
        ),
        pytest.param(
            "PodMonitor",
            lambda d: d.update(kind="Gadget"),
            kubernetes_validate.SchemaNotFoundError,
            id="unknown-kind",
        ),
    ],
)
def test_an_invalid_resource_is_refused(
    kind: str, mistake: Mistake, error: type[Exception]
) -> None:
    [resource] = copy.deepcopy(of_kind(rendered_overlay("production"), kind)[:1])
    mistake(resource)
    with pytest.raises(error):
        validate_resource(resource)


@pytest.mark.parametrize(("overlay", "deployment"), every_deployment())
def test_every_deployment_is_probed_limited_and_locked_down(
    overlay: str, deployment: Resource
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    app = container(deployment)
    ports = {port["name"]: port["containerPort"] for port in app["ports"]}
    assert list(ports) == ["http"]
    assert int(env(deployment)["TWOWAY_PORT"]["value"]) == ports["http"]

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert app[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    for kind in ("requests", "limits"):
        assert set(app["resources"][kind]) == {"cpu", "memory"}, kind

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = app["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize(("overlay", "deployment"), every_deployment())
def test_every_deployment_drains_before_it_stops(overlay: str, deployment: Resource) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert container(deployment)["lifecycle"]["preStop"] == {
        "exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}
    }
    grace = float(config_value(overlay, "TWOWAY_SHUTDOWN_GRACE"))
    assert pod["terminationGracePeriodSeconds"] > PRE_STOP_SECONDS + grace + SHUTDOWN_SECONDS


@pytest.mark.parametrize(("overlay", "deployment"), every_deployment())
def test_settings_come_from_config_maps_and_secrets_by_reference(
    overlay: str, deployment: Resource
) -> None:
    resources = rendered_overlay(overlay)
    variables = env(deployment)
    for variable in variables.values():
        assert ("value" in variable) != ("valueFrom" in variable), variable
        assert "@" not in variable.get("value", ""), f"a credential in {variable['name']}"
    for url in ("TWOWAY_AMQP_URL", "TWOWAY_MONGO_URL"):
        assert "secretKeyRef" in variables[url]["valueFrom"], url
    config_maps = {name(c) for c in of_kind(resources, "ConfigMap")}
    sources = container(deployment)["envFrom"]
    assert {s["configMapRef"]["name"] for s in sources if "configMapRef" in s} <= config_maps
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert {v["configMap"]["name"] for v in volumes if "configMap" in v} <= config_maps
    gateways_file = config_value(overlay, "TWOWAY_GATEWAYS_FILE")
    mounts = {mount["mountPath"] for mount in container(deployment)["volumeMounts"]}
    assert gateways_file.rsplit("/", 1)[0] in mounts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_disruption_budget(overlay: str) -> None:
    resources = rendered_overlay(overlay)
    budgets = of_kind(resources, "PodDisruptionBudget")
    for deployment in of_kind(resources, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(selects(b["spec"]["selector"], labels) for b in budgets), name(deployment)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaled_deployments_leave_replicas_to_their_autoscaler(overlay: str) -> None:
    resources = rendered_overlay(overlay)
    scaled = [o["spec"]["scaleTargetRef"]["name"] for o in of_kind(resources, "ScaledObject")]
    scaled += [
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(resources, "HorizontalPodAutoscaler")
    ]
    assert len(scaled) == len(set(scaled)), "a Deployment with two autoscalers"
    for deployment in of_kind(resources, "Deployment"):
        assert ("replicas" in deployment["spec"]) != (name(deployment) in scaled), name(deployment)
    assert "twoway-ingress" in scaled


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_adapters_and_outbound_scale_on_their_own_queues(overlay: str) -> None:
    resources = rendered_overlay(overlay)
    authentications = {name(a) for a in of_kind(resources, "TriggerAuthentication")}
    queues: dict[str, set[str]] = {}
    for scaled in of_kind(resources, "ScaledObject"):
        triggers = scaled["spec"]["triggers"]
        assert all(t["type"] == "rabbitmq" for t in triggers)
        assert all(t["authenticationRef"]["name"] in authentications for t in triggers)
        queues[scaled["spec"]["scaleTargetRef"]["name"]] = {
            t["metadata"]["queueName"] for t in triggers
        }
    assert queues.pop("twoway-outbound") == {OUTBOUND_QUEUE, OUTBOUND_BULK_QUEUE}
    adapters = [
        d
        for d in of_kind(resources, "Deployment")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "adapter"
    ]
    assert adapters
    for adapter in adapters:
        adapter_name = name(adapter).removeprefix("twoway-adapter-")
        assert queues.pop(name(adapter)) == {adapter_queue(adapter_name)}
    assert queues == {}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_ingress_and_api_take_outside_traffic(overlay: str) -> None:
    resources = rendered_overlay(overlay)
    [ingress] = of_kind(resources, "Ingress")
    backends = {
        path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == PUBLIC_SERVICES
    policies = of_kind(resources, "NetworkPolicy")
    deny = [p for p in policies if "ingress" not in p["spec"]]
    for deployment in of_kind(resources, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(selects(p["spec"]["podSelector"], labels) for p in deny), name(deployment)
        open_to_all = [
            p
            for p in policies
            if selects(p["spec"]["podSelector"], labels)
            and any("from" not in rule for rule in p["spec"].get("ingress", []))
        ]
        assert bool(open_to_all) == (name(deployment) in PUBLIC_SERVICES), name(deployment)


POD_NETWORK_ADDRESSES = ["10.244.1.7", "10.42.0.9", "172.20.3.4", "192.168.7.2", "fd00:10:244::5"]
"""Where ingress controllers post from: kind/kubeadm/minikube, k3s, other CNIs, dual stack."""


REFERENCE_SIGNERS = {"twoway-ingress", "twoway-outbound"}
"""Outbound signs the references in delivery reports, ingress checks them: one shared key."""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_and_outbound_share_the_reference_secret_and_no_one_else_has_it(
    overlay: str,
) -> None:
    resources = rendered_overlay(overlay)
    sources = {
        name(deployment): env(deployment)["TWOWAY_REFERENCE_SECRET"]["valueFrom"]
        for deployment in of_kind(resources, "Deployment")
        if "TWOWAY_REFERENCE_SECRET" in env(deployment)
    }
    assert set(sources) == REFERENCE_SIGNERS
    assert [source["secretKeyRef"] for source in sources.values()] == [
        {"name": "twoway-reference", "key": "secret"}
    ] * len(REFERENCE_SIGNERS)
    secrets = {name(secret): secret for secret in of_kind(resources, "Secret")}
    if overlay == "dev":  # production creates it out of band (deploy/README.md)
        assert "secret" in secrets["twoway-reference"]["data"]
    compose = load_compose()["services"]
    [shared] = {
        compose[service]["environment"]["TWOWAY_REFERENCE_SECRET"]
        for service in ("ingress", "outbound")
    }
    assert shared.startswith("${TWOWAY_REFERENCE_SECRET")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_believes_the_forwarded_headers_of_the_ingress_controller_only(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without TWOWAY_TRUSTED_PROXIES, ingress sees the controller's pod as every gateway's
    address (allow_from refuses) and ignores X-Forwarded-Proto/Host (signatures fail)."""
    value = config_value(overlay, "TWOWAY_TRUSTED_PROXIES")
    monkeypatch.setenv("TWOWAY_TRUSTED_PROXIES", value)
    monkeypatch.setenv("TWOWAY_REFERENCE_SECRET", REFERENCE_SECRET)
    proxies = [ip_network(network) for network in IngressSettings().trusted_proxies]

    def trusted(address: str) -> bool:
        return any(ip_address(address) in network for network in proxies)

    assert all(trusted(address) for address in POD_NETWORK_ADDRESSES)
    assert not any(trusted(address) for address in ("203.0.113.9", "8.8.8.8", "2001:db8::1"))


@dataclass(frozen=True)
class Peer:
    """A pod that opens a connection: its labels and its namespace."""

    labels: dict[str, str]
    namespace: str


def admits(policy: Resource, peer: Peer, port: int) -> bool:
    """Whether the NetworkPolicy lets `peer` connect to `port` of the pods it selects."""
    for rule in policy["spec"].get("ingress", []):
        if "ports" in rule and port not in [p["port"] for p in rule["ports"]]:
            continue
        for source in rule.get("from", [{"namespaceSelector": {}}]):
            in_namespace = (
                selects(source["namespaceSelector"], {NAMESPACE_NAME: peer.namespace})
                if "namespaceSelector" in source
                else peer.namespace == policy["metadata"]["namespace"]
            )
            if in_namespace and selects(source.get("podSelector", {}), peer.labels):
                return True
    return False


NAMESPACE_NAME = "kubernetes.io/metadata.name"
"""The label every namespace carries with its name."""


def backend_pods(resources: tuple[Resource, ...]) -> dict[str, tuple[dict[str, str], int]]:
    """The labels the operators give the RabbitMQ and MongoDB pods, and their client port."""
    [rabbitmq] = of_kind(resources, "RabbitmqCluster")
    [mongodb] = of_kind(resources, "MongoDBCommunity")
    return {
        "rabbitmq": (
            {"app.kubernetes.io/name": name(rabbitmq), "app.kubernetes.io/component": "rabbitmq"},
            5672,
        ),
        "mongodb": ({"app": f"{name(mongodb)}-svc"}, 27017),
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("backend", ["rabbitmq", "mongodb"])
def test_backends_take_clients_only_from_twoway_pods(overlay: str, backend: str) -> None:
    resources = rendered_overlay(overlay)
    labels, client_port = backend_pods(resources)[backend]
    [policy] = [
        p for p in of_kind(resources, "NetworkPolicy") if selects(p["spec"]["podSelector"], labels)
    ]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert all("from" in rule for rule in policy["spec"]["ingress"]), "open to all"
    here = policy["metadata"]["namespace"]
    twoway = [
        Peer(d["spec"]["template"]["metadata"]["labels"], here)
        for d in of_kind(resources, "Deployment")
    ]
    keda = Peer({"app.kubernetes.io/name": "keda-operator"}, "keda")
    operator = Peer({"app.kubernetes.io/component": "rabbitmq-operator"}, "rabbitmq-system")
    intruder = Peer({"app": "intruder"}, here)
    peer_node = Peer(labels, here)  # another member or node of the same cluster
    rabbitmq = backend == "rabbitmq"
    connections = [
        *[(pod, client_port, True) for pod in twoway],
        (intruder, client_port, False),
        (Peer({"app.kubernetes.io/part-of": "twoway"}, "elsewhere"), client_port, False),
        (peer_node, client_port, True),
        (keda, client_port, rabbitmq),  # KEDA's rabbitmq scaler reads queue lengths
        (operator, client_port, False),
        (twoway[0], 15672, False),
        (keda, 15672, rabbitmq),  # the scaler with protocol: http
        (operator, 15672, rabbitmq),  # the management API
        (peer_node, 25672, True),  # clustering
        (intruder, 25672, False),
    ]
    for peer, port, allowed in connections:
        assert admits(policy, peer, port) == allowed, (peer, port)


def test_the_dev_overlay_runs_every_image_with_compose_settings() -> None:
    resources = rendered_overlay("dev")
    compose = load_compose()["services"]
    images = {}
    for deployment in of_kind(resources, "Deployment"):
        image = container(deployment)["image"]
        images[image.removeprefix("twoway/").removesuffix(":dev")] = deployment
    assert set(images) == set(parse_dockerfile().targets)
    for target, deployment in images.items():
        assert (
            env(deployment)["TWOWAY_PORT"]["value"] == compose[target]["environment"]["TWOWAY_PORT"]
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_backends_are_replicated(overlay: str) -> None:
    resources = rendered_overlay(overlay)
    [rabbitmq] = of_kind(resources, "RabbitmqCluster")
    [mongodb] = of_kind(resources, "MongoDBCommunity")
    expected = 1 if overlay == "dev" else 3
    assert rabbitmq["spec"]["replicas"] == expected
    assert mongodb["spec"]["members"] == expected
    assert mongodb["spec"]["type"] == "ReplicaSet"
