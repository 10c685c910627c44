"""Notifier config: TOML or YAML, secrets only from env or files, one-line errors that
name the option and never the secret, exit status 2 from the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stream.notify.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
SLACK_URL = "https://hooks.slack.example/services/T000/B000/XXXXSECRETXXXX"
ENV = {"SLACK_URL": SLACK_URL, "HOOK_URL": "http://127.0.0.1:1/hook", "HMAC": "hmac-secret-123", "GTOKEN": "glsa_token_456"}

TOML = """
[notify]
group = "oncall"
max_attempts = 3
start = "earliest"

[[sinks]]
name = "slack"
type = "slack"
url_env = "SLACK_URL"
link = "http://grafana:3000/explore?key={key}&from={from_ms}&to={to_ms}&svc={label_service}"
events = ["shift", "incident"]
[sinks.filter]
labels = { service = "checkout*" }
direction = ["regression"]
min_relative_change = 0.2

[[sinks]]
name = "hook"
type = "webhook"
url_env = "HOOK_URL"
secret_env = "HMAC"

[[sinks]]
name = "grafana"
type = "grafana"
url = "http://grafana:3000"
token_env = "GTOKEN"
on_retraction = "delete"
"""

YAML = """
notify: {group: oncall, max_attempts: 3, start: earliest}
sinks:
  - name: slack
    type: slack
    url_env: SLACK_URL
    link: "http://grafana:3000/explore?key={key}&from={from_ms}&to={to_ms}&svc={label_service}"
    events: [shift, incident]
    filter: {labels: {service: "checkout*"}, direction: [regression], min_relative_change: 0.2}
  - {name: hook, type: webhook, url_env: HOOK_URL, secret_env: HMAC}
  - {name: grafana, type: grafana, url: "http://grafana:3000", token_env: GTOKEN, on_retraction: delete}
"""


def write(tmp_path: Path, text: str, name: str = "notify.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_toml_and_yaml_give_the_same_config(tmp_path):
    a = load_config(write(tmp_path, TOML), ENV)
    b = load_config(write(tmp_path, YAML, "notify.yaml"), ENV)
    assert a == b
    assert a.group == "oncall" and a.delivered_topic == "oncall-delivered" and a.dead_letter_topic == "oncall-dead-letter"
    assert a.max_attempts == 3 and a.start == "earliest"
    slack, hook, graf = a.sinks
    assert slack.url_value == SLACK_URL and slack.events == ("shift", "incident")
    assert slack.filter.labels == (("service", "checkout*"),) and slack.filter.directions == ("regression",)
    assert hook.secret is not None and hook.secret.value == "hmac-secret-123"
    assert graf.url_value == "http://grafana:3000" and graf.on_retraction == "delete"


def test_secrets_do_not_show_in_the_config_repr(tmp_path):
    text = repr(load_config(write(tmp_path, TOML), ENV))
    for secret in (SLACK_URL, "hmac-secret-123", "glsa_token_456"):
        assert secret not in text


def test_secret_from_a_file_relative_to_the_config(tmp_path):
    (tmp_path / "slack.url").write_text(SLACK_URL + "\n")
    cfg = load_config(write(tmp_path, '[[sinks]]\nname="s"\ntype="slack"\nurl_file="slack.url"\n'), {})
    assert cfg.sinks[0].url_value == SLACK_URL


@pytest.mark.parametrize("text, message", [
    ('[[sinks]]\nname="s"\ntype="slack"\nurl="%s"\n' % SLACK_URL, "url is a secret for slack sinks; give url_env or url_file"),
    ('[[sinks]]\nname="s"\ntype="slack"\nurl_env="NOPE"\n', "environment variable NOPE is not set"),
    ('[[sinks]]\nname="s"\ntype="teams"\nurl_env="SLACK_URL"\n', "type must be one of slack, webhook, grafana"),
    ('[[sinks]]\nname="s"\ntype="slack"\nurl_env="SLACK_URL"\ncolour="red"\n', "unknown option(s) colour"),
    ('[[sinks]]\nname="s"\ntype="slack"\nurl_env="SLACK_URL"\nlink="http://x/{host}"\n', "unknown placeholder(s) host"),
    ('[[sinks]]\nname="s"\ntype="slack"\nurl_env="SLACK_URL"\n[sinks.filter]\ndirection=["up"]\n', "direction: 'up' is not one of"),
    ('[[sinks]]\nname="s"\ntype="slack"\nurl_env="SLACK_URL"\n[sinks.filter]\nmin_relative_change=-1\n', "min_relative_change must be >= 0"),
    ('[notify]\nmax_attempts=0\n[[sinks]]\nname="s"\ntype="slack"\nurl_env="SLACK_URL"\n', "max_attempts must be >= 1"),
    ('[notify]\nmax_attempts="3"\n[[sinks]]\nname="s"\ntype="slack"\nurl_env="SLACK_URL"\n', "max_attempts must be int, got str"),
    ('[notify]\n', "at least one [[sinks]] table is required"),
    ('[[sinks]]\nname="s"\ntype="webhook"\nurl_env="SLACK_URL"\n[[sinks]]\nname="s"\ntype="slack"\nurl_env="SLACK_URL"\n', "duplicate name(s) s"),
    ('[[sinks]]\nname="g"\ntype="grafana"\nurl="ftp://x"\n', "url must be an http(s) URL"),
    ('[[sinks]]\nname="g"\ntype="grafana"\nurl="http://x"\nuser="admin"\n', "user and password_env/password_file go together"),
    ('not toml [', "not valid TOML"),
])
def test_bad_configs_give_one_line_errors_naming_the_option(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(path, ENV)
    msg = str(e.value)
    assert message in msg and "\n" not in msg and msg.startswith(f"{path}: ")
    assert SLACK_URL not in msg


def test_the_command_exits_2_with_one_line_and_no_traceback(tmp_path):
    cfg = write(tmp_path, '[[sinks]]\nname="s"\ntype="slack"\nurl_env="NOT_SET_ANYWHERE"\n')
    p = subprocess.run([sys.executable, "-m", "stream.notify", "--config", str(cfg), "--broker", "kafka://127.0.0.1:1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "environment variable NOT_SET_ANYWHERE is not set" in lines[0]
    assert "Traceback" not in p.stderr


def test_shiftwatch_notify_subcommand_reports_bad_configs_in_one_line(tmp_path):
    bad = write(tmp_path, '[shiftwatch]\nbroker = "kafka://127.0.0.1:1"\n[[sinks]]\nname="s"\ntype="slack"\nurl="https://x/y"\n')
    p = subprocess.run([sys.executable, "-m", "stream.cli", "notify", "--config", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [f"shiftwatch notify: error: {bad}: sinks[0] (s): url is a secret for slack sinks; give url_env or url_file"]
    p = subprocess.run([sys.executable, "-m", "stream.cli", "notify", "--config", str(bad), "--broker", "http://x"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "broker" in p.stderr


def test_the_example_configs_load_and_agree():
    env = {"SLACK_WEBHOOK_URL": SLACK_URL, "AUDIT_WEBHOOK_URL": "https://audit.example/in", "AUDIT_WEBHOOK_SECRET": "k",
           "GRAFANA_TOKEN": "t", "GRAFANA_PASSWORD": "admin"}
    a = load_config(ROOT / "deploy/notify/example.toml", env)
    assert a == load_config(ROOT / "deploy/notify/example.yaml", env)
    assert [s.type for s in a.sinks] == ["slack", "webhook", "grafana"]
    c = load_config(ROOT / "deploy/notify/compose.toml", env)
    assert [(s.type, s.url_value, s.dashboard_uid) for s in c.sinks] == [("grafana", "http://grafana:3000", "shiftwatch")]
