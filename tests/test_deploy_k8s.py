"""deploy/k8s: what `kubectl apply -k deploy/k8s` runs.

The manifests are checked against the Kubernetes API schemas (kubernetes-validate,
strict: an unknown or misspelled field fails) and against the worker itself: every
SHIFTWATCH_* variable is one of its options and resolves to a valid connection, the
probes hit the routes the worker serves (a worker waiting for Kafka is alive but not
ready), static membership comes from the pod name, memory fits --max-keys at the bytes
per key DEVELOPERS.md documents, and the pods run locked down.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from stream.connection import PASSWORD_ENV
from stream.settings import OPTIONS, resolve

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
EXAMPLES = ("secret.example.yaml",)  # shapes to copy, never applied
KUBE_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())  # GA unhealthyPodEvictionPolicy .. newest
LABELS = {"app.kubernetes.io/name": "shiftwatch", "app.kubernetes.io/component": "worker"}


def load_all() -> list[tuple[str, dict]]:
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                out.append((f.name, doc))
    return out


@pytest.fixture(scope="module")
def docs() -> list[tuple[str, dict]]:
    return load_all()


def one(docs, kind: str, name: str | None = None) -> dict:
    found = [d for _, d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module")
def sts(docs) -> dict:
    return one(docs, "StatefulSet")


@pytest.fixture(scope="module")
def pod(sts) -> dict:
    return sts["spec"]["template"]


@pytest.fixture(scope="module")
def worker(pod) -> dict:
    (c,) = pod["spec"]["containers"]
    return c


def literal_env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


# ---- the files and the API schemas -------------------------------------------------


def test_kustomization_applies_every_manifest_but_the_examples(docs):
    kust = one(docs, "Kustomization")
    applied = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml" and p.name not in EXAMPLES)
    assert sorted(kust["resources"]) == applied
    assert not (K8S / "deployment.yaml").exists(), "a StatefulSet replaced the Deployment"
    assert "Deployment" not in {d["kind"] for _, d in docs}


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_manifests_match_the_kubernetes_api(docs, version):
    core = [(f, d) for f, d in docs if d["kind"] not in ("Kustomization", "PodMonitor")]  # no CRD schemas bundled
    assert {d["kind"] for _, d in core} == {"StatefulSet", "Service", "PodDisruptionBudget", "Secret"}
    for f, d in core:
        kubernetes_validate.validate(d, version, strict=True)  # raises ValidationError with the path


def test_the_schema_check_rejects_a_misspelled_field(sts):
    broken = json.loads(json.dumps(sts))
    probe = broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]
    probe["paht"] = probe.pop("path")
    with pytest.raises(kubernetes_validate.ValidationError, match="paht"):
        kubernetes_validate.validate(broken, KUBE_VERSIONS[0], strict=True)


def test_kubectl_kustomize_builds_what_the_kustomization_names(docs):
    """kubectl is optional here (not installed by scripts/install-system-deps.sh)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True).stdout
    built = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out) if d)
    wanted = sorted((d["kind"], d["metadata"]["name"]) for f, d in docs if d["kind"] != "Kustomization" and f not in EXAMPLES)
    assert built == wanted


# ---- static membership, services, disruption budget --------------------------------


def test_statefulset_gives_each_pod_its_name_as_instance_id(docs, sts, pod, worker):
    assert sts["apiVersion"] == "apps/v1"
    assert matches(sts["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    assert pod["metadata"]["labels"] == LABELS
    (iid,) = [e for e in worker["env"] if e["name"] == "SHIFTWATCH_INSTANCE_ID"]
    assert iid["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    headless = one(docs, "Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert matches(headless["spec"]["selector"], pod["metadata"]["labels"])
    assert sts["spec"]["replicas"] >= 2


def test_services_select_the_pods_on_the_web_port(docs, pod, worker):
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    services = [d for _, d in docs if d["kind"] == "Service"]
    assert len(services) == 2  # headless (pod DNS) + the metrics/page address
    for s in services:
        assert matches(s["spec"]["selector"], pod["metadata"]["labels"]), s["metadata"]["name"]
        (port,) = s["spec"]["ports"]
        assert port["targetPort"] in ports and port["port"] == ports[port["targetPort"]] == 6066
    assert one(docs, "Service", "shiftwatch")["spec"].get("clusterIP") != "None"


def test_no_service_links_in_the_options_namespace(docs, pod):
    """Kubernetes would inject <SERVICE>_SERVICE_HOST, <SERVICE>_PORT... for every Service:
    for the Service "shiftwatch" that is SHIFTWATCH_PORT, SHIFTWATCH_SERVICE_HOST, ... ."""
    prefixes = {d["metadata"]["name"].upper().replace("-", "_") for _, d in docs if d["kind"] == "Service"}
    assert any(p == "SHIFTWATCH" or p.startswith("SHIFTWATCH_") for p in prefixes)
    assert pod["spec"]["enableServiceLinks"] is False


def test_pdb_keeps_all_but_one_worker_through_a_drain(docs, sts, pod):
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert matches(pdb["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    replicas = sts["spec"]["replicas"]
    allowed = pdb["spec"]["maxUnavailable"] if "maxUnavailable" in pdb["spec"] else replicas - pdb["spec"]["minAvailable"]
    assert allowed == 1  # a drain moves one worker's partitions at a time, and is never blocked
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


# ---- the worker's own options ------------------------------------------------------


def test_every_shiftwatch_variable_is_a_worker_option(worker):
    known = {o.env for o in OPTIONS} | {PASSWORD_ENV}
    names = [e["name"] for e in worker["env"]]
    assert len(names) == len(set(names))
    for name in names:
        assert not name.startswith("SHIFTWATCH_") or name in known, f"{name} is not an option of the worker"
    (pw,) = [e for e in worker["env"] if e["name"] == PASSWORD_ENV]
    assert "value" not in pw and set(pw["valueFrom"]) == {"secretKeyRef"}, "the password comes from a Secret"
    settings = resolve({}, env={**literal_env(worker), "SHIFTWATCH_INSTANCE_ID": "shiftwatch-worker-0"})
    assert settings.instance_id == "shiftwatch-worker-0"
    assert settings.web_host == "0.0.0.0"
    assert settings.security_protocol == "SASL_SSL" and settings.sasl_mechanism == "SCRAM-SHA-512"


def test_secrets_resolve_to_keys_and_files_of_the_secret(docs, pod, worker):
    secret = one(docs, "Secret", "shiftwatch-kafka")
    keys = set(secret["stringData"])
    for e in worker["env"]:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in keys, e["name"]
    files = mounted_secret_files(pod, worker, secret)
    cafile = literal_env(worker)["SHIFTWATCH_SSL_CAFILE"]
    assert cafile in files, f"{cafile} is not a file of the Secret's volume"
    assert files[cafile] in keys


def mounted_secret_files(pod: dict, worker: dict, secret: dict) -> dict[str, str]:
    """Path in the container -> key of the Secret, for every volume of that Secret."""
    vols = {v["name"]: v["secret"] for v in pod["spec"]["volumes"] if v.get("secret", {}).get("secretName") == secret["metadata"]["name"]}
    out = {}
    for m in worker["volumeMounts"]:
        if m["name"] in vols:
            assert m.get("readOnly") is True, m
            for item in vols[m["name"]].get("items") or [{"key": k, "path": k} for k in secret["stringData"]]:
                out[f"{m['mountPath'].rstrip('/')}/{item['path']}"] = item["key"]
    return out


def test_security_context_locks_the_pod_down(pod, worker):
    p, c = pod["spec"]["securityContext"], worker["securityContext"]
    eff = {**p, **c}  # the container's settings override the pod's
    user = re.search(r"^USER (\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert eff["runAsNonRoot"] is True and eff["runAsUser"] != 0
    assert user and eff["runAsUser"] == int(user.group(1)), "the image's user"
    assert eff["seccompProfile"] == {"type": "RuntimeDefault"} and p["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["readOnlyRootFilesystem"] is True
    assert c["allowPrivilegeEscalation"] is False
    assert c["capabilities"]["drop"] == ["ALL"] and not c["capabilities"].get("add")
    assert not c.get("privileged")
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_writable_paths_are_volumes(pod, worker):
    settings = resolve({}, env=literal_env(worker))
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    assert set(mounts.values()) <= set(vols)
    for path in (settings.data_dir, "/tmp"):
        assert path in mounts and "emptyDir" in vols[mounts[path]], path


# ---- probes ------------------------------------------------------------------------


def test_probes_hit_healthz_and_readyz_on_the_web_port(worker):
    settings = resolve({}, env=literal_env(worker))
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    assert ports == {"http": settings.web_port}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = worker[probe]["httpGet"]
        assert g["path"] == path, probe
        assert ports.get(g["port"], g["port"]) == settings.web_port, probe


def test_scrape_annotations(pod, worker):
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert ann["prometheus.io/path"] == "/metrics"
    assert int(ann["prometheus.io/port"]) == worker["ports"][0]["containerPort"]


def test_podmonitor_selects_the_pods_and_names_the_job(docs, pod, worker):
    pm = one(docs, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    labels = pod["metadata"]["labels"]
    assert matches(pm["spec"]["selector"]["matchLabels"], labels)
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] in {p["name"] for p in worker["ports"]}
    assert ep["path"] == "/metrics"
    assert labels[pm["spec"]["jobLabel"]] == "shiftwatch"  # the alert rules select job="shiftwatch"


# ---- memory from --max-keys ----------------------------------------------------------

_UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9, "": 1}
#: What the process takes without keys: ~86 MiB RSS measured (worker waiting for Kafka),
#: plus fetch buffers and /metrics rendering. The manifest budgets 256 MiB.
BASE_BYTES = 128 << 20


def quantity(q: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G|)", str(q))
    assert m, q
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def documented_key_bytes() -> tuple[float, float, int]:
    """(cold, hot) bytes per key and the number of hot keys, as DEVELOPERS.md states them."""
    text = (ROOT / "DEVELOPERS.md").read_text()
    cold = re.search(r"cold key\s+~([\d.]+) KiB", text)
    hot = re.search(r"hot key\s+~([\d.]+) KiB", text)
    n_hot = re.search(r"`hot_keys`\s+\(default\s+(\d+)\)", text)
    assert cold and hot and n_hot, "DEVELOPERS.md no longer states the memory per key"
    return float(cold.group(1)) * 1024, float(hot.group(1)) * 1024, int(n_hot.group(1))


def test_memory_fits_max_keys_at_the_documented_bytes_per_key(worker):
    max_keys = resolve({}, env=literal_env(worker)).max_keys
    cold, hot, n_hot = documented_key_bytes()
    keys = max_keys * cold + min(n_hot, max_keys) * (hot - cold)
    res = worker["resources"]
    limit, request = quantity(res["limits"]["memory"]), quantity(res["requests"]["memory"])
    assert limit >= keys + BASE_BYTES, f"{res['limits']['memory']} < {max_keys} keys ({keys / 2**20:.0f} MiB) + base"
    assert keys <= request <= limit  # the scheduler reserves what a full worker holds
    assert limit <= 2 * (keys + BASE_BYTES) + (256 << 20), "far more than the keys need"


# ---- the real worker under the manifest's environment ----------------------------------


@pytest.fixture()
def ca_pem(tmp_path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, pem = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(pem), "-days", "1", "-subj", "/CN=shiftwatch-test-ca"],
                   check=True, capture_output=True, timeout=60)
    return pem


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_worker_waiting_for_kafka_is_alive_but_not_ready(worker, ca_pem, tmp_path):
    """The manifest's env (SASL_SSL, CA file, password from the Secret) with no broker
    reachable: the liveness probe's path answers 200, the readiness probe's 503."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFTWATCH_")}
    env.update(literal_env(worker))
    port = free_port()
    env.update({
        "SHIFTWATCH_INSTANCE_ID": "shiftwatch-worker-0",
        PASSWORD_ENV: "example-password",  # the Secret's value
        "SHIFTWATCH_SSL_CAFILE": str(ca_pem),  # the Secret's file, mounted elsewhere here
        "SHIFTWATCH_BROKER": f"kafka://127.0.0.1:{free_port()}",  # nobody listens
        "SHIFTWATCH_WEB_PORT": str(port),
        "SHIFTWATCH_DATA_DIR": str(tmp_path / "data"),
    })
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        live = ready = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                live, ready = get(f"http://127.0.0.1:{port}{worker['livenessProbe']['httpGet']['path']}"), \
                    get(f"http://127.0.0.1:{port}{worker['readinessProbe']['httpGet']['path']}")
                if "no Kafka broker reachable" in ready[1].get("reason", ""):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.3)
        assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-2000:]
        assert live and live[0] == 200, live
        assert ready and ready[0] == 503 and "no Kafka broker reachable (SASL_SSL)" in ready[1]["reason"], ready
    finally:
        proc.terminate()
        try:
            out = proc.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
    assert "example-password" not in out



@pytest.mark.kafka
def test_the_manifest_env_makes_a_ready_static_member_on_sasl_ssl(kafka_secure_broker, worker, tmp_path):
    """The manifest's environment, with the test broker's address, CA and SCRAM user in
    place of the example ones, gives a worker that authenticates, joins as the static
    member named like its pod, and turns ready."""
    from worker_proc import Topics, WorkerProc

    b = kafka_secure_broker
    env = {**literal_env(worker),
           "SHIFTWATCH_INSTANCE_ID": "shiftwatch-worker-0",
           "SHIFTWATCH_SSL_CAFILE": str(b.tls.ca_file),
           "SHIFTWATCH_SASL_USERNAME": b.scram_username,
           PASSWORD_ENV: b.scram_password}
    # WorkerProc's flags point it at the SASL_SSL listener, fresh topics and a local port.
    w = WorkerProc(b.sasl_ssl_bootstrap, Topics(), tmp_path, env=env)
    try:
        w.start()
        assert w.probe("/healthz")[0] == 200
        assert w.wait_ready(90) == {"status": "ready", "reason": "ok"}
        log = w.log_path.read_text(errors="replace")
        assert "static member shiftwatch-worker-0" in log
        assert b.scram_password not in log
    finally:
        w.stop()


# ---- the README's secured-setup section ------------------------------------------------


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def shiftwatch_commands(section: str) -> list[list[str]]:
    """The `shiftwatch ...` commands of the section's sh blocks, as argument lists."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            if cmd.strip().startswith("shiftwatch "):
                out.append(cmd.split()[1:])
    return out


def test_readme_secured_examples_are_valid_worker_options(worker):
    section = readme_section("Secured clusters (TLS and SASL)")
    by_flag = {o.flag: o for o in OPTIONS}
    cmds = shiftwatch_commands(section)
    assert len(cmds) == 2 and all(c[0] == "worker" for c in cmds)
    protocols = set()
    for cmd in cmds:
        args = cmd[1:]
        flags = dict(zip(args[::2], args[1::2]))
        assert len(args) % 2 == 0 and set(flags) <= set(by_flag), cmd
        settings = resolve({by_flag[f].name: v for f, v in flags.items()}, env={})
        protocols.add(settings.security_protocol)
    assert protocols == {"SASL_SSL", "SSL"}  # SASL with a CA file, and mutual TLS
    for name in set(re.findall(r"SHIFTWATCH_[A-Z_]+", section)):
        assert name in {o.env for o in OPTIONS} | {PASSWORD_ENV}, name
    assert worker["resources"]["limits"]["memory"] in section  # the memory it explains is the manifest's
