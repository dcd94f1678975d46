"""Every bundled collector config loads in the real collector we build (`otelcol validate`)."""

from __future__ import annotations

import os
import subprocess

import pytest

from collector_support import CONFIGS, otelcol

AGENT_PROFILES = {
    "default": {},  # the file exporter
    "gateway": {"MODELOTEL_EXPORTERS": "[otlp_grpc/gateway]"},
    "file": {"MODELOTEL_EXPORTERS": "[file]"},
    "gateway+file": {"MODELOTEL_EXPORTERS": "[otlp_grpc/gateway, file]"},
}


def validate(config, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [otelcol(), "validate", "--config", str(config)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("profile", sorted(AGENT_PROFILES))
def test_agent_config_validates(profile):
    result = validate(CONFIGS / "agent.yaml", AGENT_PROFILES[profile])
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"MODELOTEL_TRACES_EXPORTERS": "[file]", "MODELOTEL_LOGS_EXPORTERS": "[debug]"},
        {"MODELOTEL_TRACES_EXPORTERS": "[file]", "MODELOTEL_LOGS_EXPORTERS": "[file/logs]"},
    ],
    ids=["default", "file-and-debug", "file-and-file-logs"],
)
def test_grafana_config_validates(env):
    result = validate(CONFIGS / "grafana.yaml", env)
    assert result.returncode == 0, result.stderr


def test_a_bad_exporter_name_is_rejected():
    """validate really checks: an exporter the pipeline names but nobody defines fails."""
    result = validate(CONFIGS / "agent.yaml", {"MODELOTEL_EXPORTERS": "[jaeger]"})
    assert result.returncode != 0
    assert "jaeger" in result.stderr


def test_collector_has_the_components_the_configs_use():
    out = subprocess.run([otelcol(), "components"], capture_output=True, text=True, timeout=60).stdout
    for name in (
        "otlp",
        "memory_limiter",
        "batch",
        "redaction",
        "tail_sampling",
        "cumulative_to_delta",
        "transform",
        "filter",
        "attributes",
        "resource",
        "span_metrics",
        "load_balancing",
        "prometheus_remote_write",
        "otlp_http",
        "otlp_grpc",
        "file",
        "file_storage",
        "health_check",
    ):
        assert f"- name: {name}\n" in out, name
