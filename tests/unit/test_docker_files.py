"""Static checks of docker/: the compose file parses, has every service, and pins the same Airflow."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def _airflow_dev_pin() -> str:
    """The ``apache-airflow==X`` version of the dev extra in pyproject.toml."""
    # A regex, not tomllib: the package supports Python 3.10, which has no tomllib.
    pins = re.findall(r'"apache-airflow==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert len(pins) == 1, pins
    return str(pins[0])


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed compose file."""
    data = yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _command(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def _replicas(service: dict[str, Any]) -> int:
    return int(service.get("deploy", {}).get("replicas", 1))


def test_dockerfile_builds_from_the_pinned_official_image() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert froms == [f"apache/airflow:{_airflow_dev_pin()}"]
    arg = re.search(r"^ARG AIRFLOW_VERSION=(\S+)", text, flags=re.MULTILINE)
    assert arg is not None and arg.group(1) == _airflow_dev_pin()
    assert re.search(r"pip install .*/opt/provider", text), "the Dockerfile must install this package"


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    services: dict[str, dict[str, Any]] = compose["services"]
    commands = {name: _command(svc) for name, svc in services.items()}
    assert services["postgres"]["image"].startswith("postgres:")
    for component in ("api-server", "scheduler", "dag-processor"):
        assert [n for n, c in commands.items() if c == component], f"no {component} service"
    triggerers = sum(_replicas(services[n]) for n, c in commands.items() if c == "triggerer")
    assert triggerers == 2, "two triggerers keep deferred MiniMax tasks running when one dies"
    emulators = [n for n, c in commands.items() if "airflow_provider_minimax.testing.emulator" in c]
    assert len(emulators) == 1
    assert "0.0.0.0" in commands[emulators[0]], "the emulator must listen beyond its container's loopback"


def test_compose_image_and_connections_are_consistent(compose: dict[str, Any]) -> None:
    version = _airflow_dev_pin()
    airflow_services = {
        n: s
        for n, s in compose["services"].items()
        if _command(s) in {"api-server", "scheduler", "triggerer"}
    }
    for name, service in airflow_services.items():
        assert service["build"]["dockerfile"] == "docker/Dockerfile", name
        assert service["image"].endswith(f":{version}"), name
        env = service["environment"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql"), name
        assert '"api": "task"' in env["AIRFLOW_CONN_MINIMAX_DEFAULT"], name
        assert '"api": "chat"' in env["AIRFLOW_CONN_MINIMAX_CHAT"], name
