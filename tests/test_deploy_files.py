"""The deployment files no test machine can run (no Docker engine, no cluster): the Kubernetes manifests
against the Kubernetes API schemas, and every file against the image and config they go with, so that a
port, a path, a user or a variable cannot drift between them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml  # type: ignore[import-untyped]

from forwarder.config.loader import load_config

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"  # the oldest release still widely run; nothing newer is used
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> dict[str, dict[str, Any]]:
    """kind -> the one resource of that kind in the kustomization."""
    kustomization = documents(K8S / "kustomization.yaml")[0]
    out: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        for doc in documents(K8S / name):
            assert doc["kind"] not in out, f"two {doc['kind']} resources"
            out[doc["kind"]] = doc
    return out


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def variables(text: str) -> set[str]:
    return {m for line in text.splitlines() if not line.lstrip().startswith("#") for m in _VAR.findall(line)}


@pytest.mark.parametrize("manifest", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_every_manifest_is_valid_kubernetes(manifest: str) -> None:
    for doc in documents(K8S / manifest):
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            # The Prometheus Operator's CRD has no schema here: check what it must say.
            assert doc["kind"] == "ServiceMonitor"
            assert doc["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_kustomization_has_what_the_forwarder_needs() -> None:
    found = resources()
    assert set(found) == {"Namespace", "Secret", "ConfigMap", "Service", "StatefulSet"}
    labels = {"app.kubernetes.io/name": "nsg-forwarder"}
    sts = found["StatefulSet"]
    pod = sts["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert sts["spec"]["replicas"] == 1  # one process per checkpoint file
    assert sts["spec"]["selector"]["matchLabels"] == labels == sts["spec"]["template"]["metadata"]["labels"]
    # The image's user, its config path and its state volume.
    uid = int(re.search(r"--uid (\d+)", dockerfile()).group(1))  # type: ignore[union-attr]
    assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["fsGroup"] == uid
    assert container["args"] == ["run", "--config", "/etc/nsg-forwarder/config.toml"]
    assert '"--config", "/etc/nsg-forwarder/config.toml"' in dockerfile()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert mounts["state"] == "/var/lib/nsg-forwarder" and "state" in claims
    assert 'VOLUME ["/var/lib/nsg-forwarder"]' in dockerfile()
    assert mounts["config"] == "/etc/nsg-forwarder"
    assert {v["name"]: v["configMap"]["name"] for v in pod["volumes"]} == {
        "config": found["ConfigMap"]["metadata"]["name"]
    }
    # Probes and metrics on the named port the Service and a ServiceMonitor use.
    (port,) = container["ports"]
    assert port == {"name": "metrics", "containerPort": 9108}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    service = found["Service"]["spec"]
    assert service["selector"] == labels and service["ports"] == [
        {"name": "metrics", "port": 9108, "targetPort": "metrics"}
    ]
    assert sts["spec"]["serviceName"] == found["Service"]["metadata"]["name"]
    assert container["envFrom"] == [{"secretRef": {"name": found["Secret"]["metadata"]["name"]}}]
    # SIGTERM's grace ([service] shutdown_grace, 10 s) fits in the pod's.
    assert pod["terminationGracePeriodSeconds"] > 10


def test_the_configmap_is_the_container_example_and_loads_with_the_secret(tmp_path: Path) -> None:
    found = resources()
    text = found["ConfigMap"]["data"]["config.toml"]
    assert text == (REPO / "examples" / "container.toml").read_text()
    env = found["Secret"]["stringData"]
    assert variables(text) == set(env), "the Secret must give exactly the variables the config uses"
    path = tmp_path / "config.toml"
    path.write_text(text)
    cfg = load_config(path, env=env)
    assert cfg["checkpoint"]["path"].startswith("/var/lib/nsg-forwarder/")
    assert cfg["metrics"]["listen"] == "0.0.0.0:9108"
    archive = [s["path"] for s in cfg["sink"] if s["type"] == "file"]
    mounts = {m["mountPath"] for m in found["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert all(str(Path(p).parent) in mounts for p in archive)


def test_compose_runs_the_image_with_its_config_state_volume_and_every_variable(tmp_path: Path) -> None:
    compose = documents(REPO / "compose.yaml")[0]
    service = compose["services"]["nsg-forwarder"]
    assert service["build"] == "." and service["command"] == ["run", "--config", "/etc/nsg-forwarder/config.toml"]
    volumes = {v.split(":")[1]: v for v in service["volumes"]}
    assert volumes["/etc/nsg-forwarder/config.toml"] == "./examples/container.toml:/etc/nsg-forwarder/config.toml:ro"
    state = volumes["/var/lib/nsg-forwarder"].split(":")[0]
    assert state in compose["volumes"], "the state volume is declared, so it outlives the container"
    config = (REPO / "examples" / "container.toml").read_text()
    assert variables(config) == set(service["environment"])
    assert all(":?" in value for value in service["environment"].values()), "a missing variable stops compose"
    assert "127.0.0.1:9108:9108" in service["ports"]
    path = tmp_path / "config.toml"
    path.write_text(config)
    assert load_config(path, env={name: "https://x.example:8088" for name in service["environment"]})


def test_the_environment_file_of_the_unit_names_every_variable_the_example_config_uses() -> None:
    env_example = (REPO / "systemd" / "nsg-forwarder.env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", env_example, re.MULTILINE))
    used = variables((REPO / "examples" / "forwarder.toml").read_text())
    assert used and used <= named, f"missing from nsg-forwarder.env.example: {sorted(used - named)}"
