"""The deployment files: docker-compose.yml validates with `docker-compose config`,
.env.example documents every setting, and the process topology the compose file declares
runs (as local processes against the machine's PostgreSQL and Redis) and trains a job."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from service.core.config import Settings
from tests.conftest import free_port
from tests.support.processes import Client, ServiceProcess, run_cli, service_env, wait_until_healthy

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
APP_SERVICES = ["migrate", "api", "dispatcher", "worker-cpu", "worker-gpu"]
COMMANDS = {
    "migrate": ["labtrain", "db", "upgrade"],
    "api": ["labtrain", "api", "--host", "0.0.0.0", "--workers", "4"],
    "dispatcher": ["labtrain", "dispatcher"],
    "worker-cpu": ["labtrain", "worker", "--queues", "cpu"],
    "worker-gpu": ["labtrain", "worker", "--queues", "gpu", "--concurrency", "1"],  # LABTRAIN_JOBS_PER_GPU unset
}
# Read by docker compose itself (interpolation, profiles), not by labtrain's Settings.
COMPOSE_ONLY = {
    "COMPOSE_PROFILES",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "REDIS_PASSWORD",
    "API_PUBLISH",
    "POSTGRES_PUBLISH",
    "REDIS_PUBLISH",
    "LABTRAIN_API_WORKERS",
    "LABTRAIN_JOBS_PER_GPU",
    "PROMETHEUS_MULTIPROC_DIR",
}


def read_env_file(path: Path, with_defaults: bool = False) -> dict[str, str]:
    """KEY=VALUE lines; with `with_defaults`, also the commented-out `# KEY=VALUE` defaults."""
    pattern = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
    values = {}
    for line in path.read_text().splitlines():
        match = pattern.match(line.strip())
        if match and (with_defaults or not match.group(1)):
            values[match.group(2)] = match.group(3)
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}` and `${NAME:-default}`."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m.group(1)) or m.group(2) or "", value)


def test_env_example_documents_every_setting():
    settings_vars = set(re.findall(r'"(LABTRAIN_[A-Z_]+)"', (ROOT / "service" / "core" / "config.py").read_text()))
    documented = read_env_file(ENV_EXAMPLE, with_defaults=True)
    assert settings_vars - set(documented) == set(), "settings missing from .env.example"
    assert set(documented) - settings_vars - COMPOSE_ONLY == set(), "unknown names in .env.example"
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):  # each setting has a comment saying what it is
        if re.match(r"^(# ?)?[A-Z][A-Z0-9_]*=", line):
            above = next(lines[j] for j in range(i - 1, -1, -1) if not re.match(r"^(# ?)?[A-Z][A-Z0-9_]*=", lines[j]))
            assert above.startswith("# ") and len(above) > 10, line
    # The commented defaults are the real defaults.
    given = read_env_file(ENV_EXAMPLE)
    with_defaults = Settings.from_env_map(documented)
    assert with_defaults == Settings.from_env_map(given)
    # The URLs carry the passwords set for the postgres and redis services.
    assert f":{given['POSTGRES_PASSWORD']}@postgres:5432/{given['POSTGRES_DB']}" in given["LABTRAIN_DATABASE_URL"]
    assert given["LABTRAIN_DATABASE_URL"].startswith(f"postgresql+psycopg://{given['POSTGRES_USER']}:")
    assert given["LABTRAIN_BROKER_URL"] == f"redis://:{given['REDIS_PASSWORD']}@redis:6379/0"
    assert {f.name for f in dataclasses.fields(Settings)} >= {"retention_days"}


def test_compose_config_validates_and_declares_the_services(tmp_path):
    result = _compose_config(tmp_path, COMPOSE.read_text())
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    for name, command in COMMANDS.items():
        assert services[name]["command"] == command, name
    env = read_env_file(ENV_EXAMPLE)
    for name in APP_SERVICES:
        service = services[name]
        assert service["environment"]["LABTRAIN_DATABASE_URL"] == env["LABTRAIN_DATABASE_URL"]
        assert sorted(service["volumes"]) == [
            f"artifacts:{env['LABTRAIN_ARTIFACT_DIR']}:rw",
            f"datasets:{env['LABTRAIN_DATA_DIR']}:rw",
        ]
        if name != "migrate":
            assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
            assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
            assert service["restart"] == "unless-stopped"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    gpu = services["worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}
    ]
    assert gpu["environment"]["CUDA_VISIBLE_DEVICES"] == "0" and gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert set(config["volumes"]) >= {"artifacts", "datasets"}


def _compose_config(folder: Path, compose_text: str) -> subprocess.CompletedProcess:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is missing: `make debian-tools` installs Debian's package"
    (folder / "docker-compose.yml").write_text(compose_text)
    shutil.copy(ENV_EXAMPLE, folder / ".env")
    return subprocess.run(
        [tool, "-f", str(folder / "docker-compose.yml"), "--env-file", str(folder / ".env"), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )


def test_the_admins_guide_s_second_gpu_service_and_nfs_volume_validate(tmp_path):
    deployment = (ROOT / "docs" / "admins.md").read_text().split("## Deployment", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", deployment, re.S)
    second_gpu = next(b for b in blocks if "worker-gpu-1:" in b)
    nfs = next(b for b in blocks if "type: nfs" in b)
    services_part, volumes_part = COMPOSE.read_text().split("\nvolumes:\n")
    text = services_part + "\n" + second_gpu + "\n" + nfs + volumes_part.replace("  artifacts:\n", "")
    result = _compose_config(tmp_path, text)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    gpu1 = config["services"]["worker-gpu-1"]
    assert gpu1["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["1"]
    assert gpu1["environment"]["CUDA_VISIBLE_DEVICES"] == "0" and gpu1["command"] == COMMANDS["worker-gpu"]
    assert config["volumes"]["artifacts"]["driver_opts"]["type"] == "nfs"


def test_dockerfiles_install_the_pinned_extras_as_a_non_root_user():
    cpu = (ROOT / "docker" / "Dockerfile.cpu").read_text()
    gpu = (ROOT / "docker" / "Dockerfile.gpu").read_text()
    assert cpu.startswith("#") and "FROM python:3.11-slim" in cpu and "FROM ${CUDA_IMAGE}" in gpu
    assert "--extra-index-url https://download.pytorch.org/whl/cpu '.[cpu]'" in cpu and "'.[gpu]'" in gpu
    env = read_env_file(ENV_EXAMPLE)
    for text in (cpu, gpu):
        assert "\nUSER labtrain\n" in text
        assert f"LABTRAIN_ARTIFACT_DIR={env['LABTRAIN_ARTIFACT_DIR']}" in text
        assert f"LABTRAIN_DATA_DIR={env['LABTRAIN_DATA_DIR']}" in text


@pytest.fixture
def compose_stack(tmp_path, make_pg_database, make_redis_url):
    """docker-compose.yml's application services as local processes: migrate first (it must
    succeed), then the rest, with .env.example's settings pointed at this machine's servers.
    PostgreSQL and Redis are the machine's own; worker-gpu needs a GPU."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    dotenv = read_env_file(ENV_EXAMPLE)
    compose_env = {**dotenv, "LABTRAIN_API_WORKERS": "2"}  # what compose interpolates from .env
    overrides = {
        "LABTRAIN_DATABASE_URL": make_pg_database(),
        "LABTRAIN_BROKER_URL": make_redis_url(),
        "LABTRAIN_HOME": str(tmp_path),
        "LABTRAIN_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "LABTRAIN_DATA_DIR": str(tmp_path / "datasets"),
        # Test sessions running side by side share Redis' few databases, so another
        # session's worker may take a message of ours: the dispatcher sends it again soon.
        "LABTRAIN_RESEND_AFTER_S": "3",
    }
    base_env = service_env(tmp_path, **{**dotenv, **overrides})

    def argv(name: str) -> list[str]:
        command = [interpolate(str(arg), compose_env) for arg in services[name]["command"]]
        assert command[0] == "labtrain"  # the console script; `python -m service` is the same command
        return command[1:]

    def env_of(name: str) -> dict[str, str]:
        return {**base_env, **{k: str(v) for k, v in (services[name].get("environment") or {}).items()}}

    migrated = run_cli(argv("migrate"), env_of("migrate"))
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    started = [name for name in services if name not in ("postgres", "redis", "migrate", "worker-gpu")]
    assert started == ["api", "dispatcher", "worker-cpu"]
    processes = []
    try:
        for name in started:
            assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
            args = argv(name) + (["--host", "127.0.0.1", "--port", str(port)] if name == "api" else [])
            processes.append(ServiceProcess(args, env_of(name), tmp_path / f"{name}.log"))
        base_url = f"http://127.0.0.1:{port}"
        wait_until_healthy(base_url, processes, timeout=90)
        yield base_url, base_env, dict(zip(started, processes)), services
    finally:
        for process in processes:
            process.stop()


def test_the_compose_topology_runs_a_job(compose_stack):
    base_url, env, processes, services = compose_stack
    # The api's health check, as compose runs it in the container (port 8000 there).
    check = services["api"]["healthcheck"]["test"]
    assert check[:2] == ["CMD", "python"]
    ready = subprocess.run(
        [sys.executable, *[a.replace(":8000/", f":{base_url.rsplit(':', 1)[1]}/") for a in check[2:]]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ready.returncode == 0, ready.stderr
    assert requests.get(f"{base_url}/readyz", timeout=5).status_code == 200

    created = run_cli(["users", "create", "admin", "--admin"], env)  # docs/admins.md: the first admin
    assert created.returncode == 0, created.stderr
    client = Client(base_url, created.stdout.strip())
    response = client.post("/api/v1/jobs", json={"dataset": "iris", "algorithm": "knn", "evaluation": {"cv": 3}})
    assert response.status_code == 201, response.text
    job = client.wait_for(response.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["accuracy"] > 0.85

    api_log = processes["api"].output()
    assert "Starting gunicorn" in api_log and api_log.count("Booting worker") == 2  # LABTRAIN_API_WORKERS
    workers = run_cli(["admin", "workers", "--json"], env)
    assert workers.returncode == 0, workers.stderr
    assert [(w["queues"], w["online"]) for w in yaml.safe_load(workers.stdout)] == [(["cpu"], True)]
    usage = run_cli(["admin", "usage", "--since", "1h", "--json"], env)
    assert [(u["user"], u["queue"], u["jobs"]) for u in yaml.safe_load(usage.stdout)["usage"]] == [("admin", "cpu", 1)]
