"""docker-compose.yml: `docker-compose config` accepts it (no Docker engine needed), and
the services are wired as documented. Needs docker-compose (Debian) or `docker compose`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {"kafka", "worker-1", "worker-2", "loadgen", "notifier", "prometheus", "grafana"}
BROKER = "kafka://kafka:9092"


def compose_cmd() -> list[str]:
    """docker-compose (v1, Debian) or the docker compose v2 plugin; missing fails under CI=true, else skips."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        p = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
        if p.returncode == 0:
            return ["docker", "compose"]
    msg = "docker-compose not found (run scripts/install-system-deps.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def run_compose(*args: str) -> str:
    p = subprocess.run(
        [*compose_cmd(), "-f", str(COMPOSE), *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COMPOSE_PROJECT_NAME": "shiftwatch"},
    )
    assert p.returncode == 0, f"compose {' '.join(args)} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as docker-compose resolves it (anchors merged, paths absolute)."""
    return yaml.safe_load(run_compose("config"))


def test_compose_config_parses_and_lists_the_services(resolved):
    assert set(run_compose("config", "--services").split()) == SERVICES
    assert set(resolved["services"]) == SERVICES


def test_kafka_is_the_official_image_in_kraft_mode(resolved):
    k = resolved["services"]["kafka"]
    assert k["image"].startswith("apache/kafka:")
    env = k["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert str(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]).endswith("@kafka:9093")
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    assert "healthcheck" in k


def _argv(svc: dict) -> list[str]:
    cmd = svc["command"]
    return cmd.split() if isinstance(cmd, str) else list(cmd)


@pytest.mark.parametrize("name", ["worker-1", "worker-2"])
def test_workers_are_built_here_and_use_the_broker(resolved, name):
    w = resolved["services"][name]
    assert Path(w["build"]["context"] if isinstance(w["build"], dict) else w["build"]).resolve() == ROOT
    argv = _argv(w)
    assert argv[0] == "worker"
    assert argv[argv.index("--broker") + 1] == BROKER
    assert argv[argv.index("--web-port") + 1] == "6066"
    assert w["environment"]["SHIFTWATCH_WEB_HOST"] == "0.0.0.0", "in a container /metrics must listen beyond loopback"
    dep = w["depends_on"]
    assert "kafka" in dep and (not isinstance(dep, dict) or dep["kafka"]["condition"] == "service_healthy")
    assert any(str(p.get("target") if isinstance(p, dict) else p).endswith("6066") for p in w["ports"])


def test_loadgen_uses_the_broker(resolved):
    argv = _argv(resolved["services"]["loadgen"])
    assert argv[0] == "loadgen" and argv[argv.index("--broker") + 1] == BROKER


def test_notifier_annotates_the_bundled_grafana(resolved):
    from stream.notify.config import load_config

    n = resolved["services"]["notifier"]
    argv = _argv(n)
    assert argv[0] == "notify" and argv[argv.index("--broker") + 1] == BROKER
    mounts = {}
    for v in n["volumes"]:
        src, dst = (v.split(":")[0], v.split(":")[1]) if isinstance(v, str) else (v["source"], v["target"])
        mounts[dst] = Path(src).resolve()
    config = mounts[argv[argv.index("--config") + 1]]
    assert config == (ROOT / "deploy" / "notify" / "compose.toml").resolve()
    cfg = load_config(config, {k: str(v) for k, v in n["environment"].items()})
    (sink,) = cfg.sinks
    assert sink.type == "grafana" and sink.url_value == "http://grafana:3000" and cfg.web_host == "0.0.0.0"
    dash = json.loads((ROOT / "deploy/grafana/dashboards/shiftwatch.json").read_text())
    assert sink.dashboard_uid == dash["uid"], "annotations land on the bundled dashboard"
    assert "grafana" in n["depends_on"] and "kafka" in n["depends_on"]
    assert any(str(p.get("target") if isinstance(p, dict) else p).endswith(str(cfg.web_port)) for p in n["ports"])


def test_prometheus_mounts_the_config_and_rules(resolved):
    p = resolved["services"]["prometheus"]
    assert p["image"].startswith("prom/prometheus:")
    mounts = {}
    for v in p["volumes"]:
        src, dst = (v.split(":")[0], v.split(":")[1]) if isinstance(v, str) else (v["source"], v["target"])
        mounts[dst] = Path(src)
    assert mounts["/etc/prometheus"].resolve() == (ROOT / "deploy" / "prometheus").resolve()
    assert "--config.file=/etc/prometheus/prometheus.yml" in _argv(p)
    assert (ROOT / "deploy" / "prometheus" / "prometheus.yml").is_file()
    assert (ROOT / "deploy" / "prometheus" / "alerts.yml").is_file()


def test_grafana_mounts_provisioning_and_dashboards(resolved):
    g = resolved["services"]["grafana"]
    assert g["image"].startswith("grafana/grafana:")
    mounts = {}
    for v in g["volumes"]:
        src, dst = (v.split(":")[0], v.split(":")[1]) if isinstance(v, str) else (v["source"], v["target"])
        mounts[dst] = Path(src).resolve()
    assert mounts["/etc/grafana/provisioning"] == (ROOT / "deploy" / "grafana" / "provisioning").resolve()
    dash_dir = mounts["/var/lib/grafana/dashboards"]
    assert dash_dir == (ROOT / "deploy" / "grafana" / "dashboards").resolve()
    # The provider reads the directory the dashboards are mounted to.
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/shiftwatch.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    home = g["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert (dash_dir / Path(home).name).is_file()


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert any(ln.startswith("RUN pip install .") for ln in lines)
    assert 'ENTRYPOINT ["shiftwatch"]' in lines
    for d in ("sketches", "detectors", "stream"):
        assert any(ln.startswith(f"COPY {d} ") for ln in lines), d
