"""deploy/k8s: the manifests parse and agree (labels and selectors, ports, probes,
scrape annotations, PodMonitor)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"


@pytest.fixture(scope="module")
def objs() -> dict[str, dict]:
    out = {}
    for f in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                assert {"apiVersion", "kind"} <= set(doc), f
                if doc["kind"] != "Kustomization":
                    assert doc["metadata"]["name"], f
                out[doc["kind"]] = doc
    return out


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_all_kinds_present(objs):
    assert {"Deployment", "Service", "PodMonitor"} <= set(objs)
    kust = objs.get("Kustomization")
    if kust:
        assert sorted(kust["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_deployment(objs):
    d = objs["Deployment"]
    assert d["apiVersion"] == "apps/v1"
    spec = d["spec"]
    assert spec["replicas"] == 2
    pod_labels = spec["template"]["metadata"]["labels"]
    assert matches(spec["selector"]["matchLabels"], pod_labels)
    (c,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SHIFTWATCH_BROKER"].startswith("kafka://")
    assert env["SHIFTWATCH_WEB_HOST"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": int(env.get("SHIFTWATCH_WEB_PORT", 6066))}
    for probe in ("readinessProbe", "livenessProbe"):
        g = c[probe]["httpGet"]
        assert g["path"] == "/metrics" and g["port"] in ("http", ports["http"]), probe
    r = c["resources"]
    assert r["requests"]["cpu"] and r["requests"]["memory"] and r["limits"]["memory"]
    # Writable data dir when the root filesystem is read-only.
    if c.get("securityContext", {}).get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert env["SHIFTWATCH_DATA_DIR"] in mounts and "/tmp" in mounts
        vols = {v["name"] for v in spec["template"]["spec"]["volumes"]}
        assert {m["name"] for m in c["volumeMounts"]} <= vols


def test_scrape_annotations(objs):
    d = objs["Deployment"]["spec"]["template"]
    ann = d["metadata"]["annotations"]
    c = d["spec"]["containers"][0]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] == "/metrics"
    assert int(ann["prometheus.io/port"]) == c["ports"][0]["containerPort"]


def test_service_selects_the_pods(objs):
    s = objs["Service"]
    pod = objs["Deployment"]["spec"]["template"]
    assert matches(s["spec"]["selector"], pod["metadata"]["labels"])
    (port,) = s["spec"]["ports"]
    names = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert port["targetPort"] in names or port["targetPort"] in names.values()
    assert port["port"] == 6066


def test_podmonitor_selects_the_pods_and_names_the_job(objs):
    pm = objs["PodMonitor"]
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    pod = objs["Deployment"]["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert matches(pm["spec"]["selector"]["matchLabels"], labels)
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert ep["path"] == "/metrics"
    # The alert rules select job="shiftwatch".
    assert labels[pm["spec"]["jobLabel"]] == "shiftwatch"
