"""Notifications: shifts, retractions and incidents to Slack, webhooks and Grafana."""

from .config import ConfigError, NotifyConfig, SinkConfig, load_config
from .runner import build_notify_parser, notify_async, run_notify

__all__ = ["ConfigError", "NotifyConfig", "SinkConfig", "load_config", "build_notify_parser", "notify_async", "run_notify"]
