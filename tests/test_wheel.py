"""The wheel, installed into a fresh venv outside the checkout, runs the service on its own.

This module builds the wheel (``pip wheel --no-deps``) from a copy of the sources, installs it
with the pinned requirements.txt into a new venv in a temporary directory, and runs everything
from there: the ``balance-service`` command, gunicorn, with the temporary directory as working
directory and no ``PYTHONPATH``, so nothing can be imported from the checkout.

pip works offline here, as every test does: no index and no configuration files, only the wheelhouse
``scripts/setup-venv`` fills (the wheels of requirements.txt and of the build backend pinned in
requirements-build.txt), and a closed loopback port as its proxy, so that a request it still tried
fails the test instead of reaching out. The build keeps its isolation, so it proves that
pyproject.toml's build requirements suffice, and the install that requirements.txt holds everything
the wheel needs. Without a wheelhouse as new as the requirements these tests skip, except under
``CI=true``, where they fail: ``.ci/run`` fills it through ``scripts/test``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from balance_service import __version__
from tests.helpers import REPO, clean_environment, running_gunicorn

pytestmark = pytest.mark.e2e

#: Filled by scripts/setup-venv; ``.filled`` is touched last, so its age tells whether it is complete and current.
WHEELHOUSE = REPO / ".venv" / "wheelhouse"
#: What the wheelhouse is made from.
WHEELHOUSE_SOURCES = (REPO / "requirements.txt", REPO / "requirements-build.txt")
#: A port nothing listens on: a proxy there refuses every request pip might still try.
CLOSED_PROXY = "http://127.0.0.1:9"

#: What a build never needs, or must not see (a stale ``build/`` would put deleted modules in the wheel).
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "instance", "results"
)


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def outside_environment(**settings: str) -> dict[str, str]:
    """The test's clean environment without anything that points Python at the checkout, another venv or an index."""
    env = clean_environment()
    for name in [*env]:
        if name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV") or name.startswith("PIP_"):
            del env[name]
    env.update(settings)
    return env


def wheelhouse() -> Path:
    """scripts/setup-venv's wheelhouse; a skip (a failure under ``CI=true``) when it is missing or older than
    the requirements it was filled from, since only that script, with the network, can fill it."""
    filled = WHEELHOUSE / ".filled"
    if filled.exists() and all(filled.stat().st_mtime >= source.stat().st_mtime for source in WHEELHOUSE_SOURCES):
        return WHEELHOUSE
    message = f"{WHEELHOUSE} is missing or older than the requirements: run scripts/setup-venv requirements-dev.txt"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def offline_pip_environment(wheels: Path) -> dict[str, str]:
    """pip, and the pip its isolated build runs, with ``wheels`` as the only source of packages.

    No configuration file is read (a machine's may add indexes, find-links or constraints), no index is
    asked, and a request that still went out would go to a closed loopback port, once, and fail.
    """
    env = outside_environment(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheels),
        PIP_RETRIES="0",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
    )
    for name in ("no_proxy", "NO_PROXY"):
        env.pop(name, None)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = CLOSED_PROXY
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A new venv holding the freshly built wheel and the pinned runtime requirements, nothing else."""
    env = offline_pip_environment(wheelhouse())
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=_NOT_COPIED)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(root / "dist"), str(source)], root, env, 600)
    (wheel,) = (root / "dist").glob("balance_service-*.whl")
    assert wheel.name == f"balance_service-{__version__}-py3-none-any.whl"
    shutil.rmtree(source)
    # No pip inside (ensurepip takes longer than the install): this test's pip installs into it.
    run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], root, env)
    pip = [sys.executable, "-m", "pip", "--python", str(root / "venv" / "bin" / "python"), "install", "-q"]
    run([*pip, "-r", str(REPO / "requirements.txt"), str(wheel)], root, env, 600)
    return root / "venv"


def installed(venv: Path, *args: str, env: dict[str, str]) -> str:
    """``balance-service ARGS`` from the venv, run in the directory that holds the venv."""
    return run([str(venv / "bin" / "balance-service"), *args], venv.parent, env, 60)


def get(url: str, key: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def demo_key(venv, tmp_path) -> tuple[dict[str, str], str]:
    """A throw-away SQLite file seeded by the installed ``init-db`` and ``demo``; yields (environment, key)."""
    env = outside_environment(DATABASE_URL=f"sqlite:///{tmp_path / 'balance.sqlite3'}", WEB_CONCURRENCY="1")
    installed(venv, "init-db", env=env)
    output = installed(venv, "demo", env=env)
    return env, re.search(r"^sk-\w{48}$", output, re.M).group(0)


def test_the_installed_script_prints_the_services_version(venv):
    assert installed(venv, "--version", env=outside_environment()).strip() == f"balance-service {__version__}"


def test_the_venv_imports_the_installed_package_not_the_checkout(venv):
    code = "import balance_service, balance_service.gunicorn_conf as c; "
    code += "print(balance_service.__file__, c.__file__, balance_service.__version__)"
    output = run([str(venv / "bin" / "python"), "-c", code], venv.parent, outside_environment())
    package, config, version = output.split()
    assert Path(package).is_relative_to(venv) and Path(config).is_relative_to(venv)
    assert not Path(package).is_relative_to(REPO)
    assert version == __version__


def test_installed_gunicorn_serves_the_balance_of_the_key_the_installed_demo_printed(venv, demo_key, tmp_path):
    env, key = demo_key
    gunicorn = [str(venv / "bin" / "gunicorn"), "-c", "python:balance_service.gunicorn_conf"]
    command = [*gunicorn, "balance_service.wsgi:app"]
    with running_gunicorn(env, tmp_path / "gunicorn.log", command=command, cwd=venv.parent) as (base, _):
        status, body = get(base + "/v1/user/balance", key)
        assert (status, body["success"], body["remain_balance"], body["unit"]) == (200, True, 10, "USD")
        # The demo's 30 days of requests: spent on the account, and shown by the usage history.
        status, usage = get(base + "/v1/usage", key)
        assert (status, len(usage["days"])) == (200, 30)
        assert body["used_balance"] == usage["total_used"] > 0
        status, body = get(base + "/v1/balance", key)
        assert (status, body["balance"]) == (200, 2)
        assert get(base + "/v1/balance", "sk-" + "x" * 48) == (401, {"success": False, "message": "Invalid token"})


def test_balance_service_serve_runs_gunicorn_with_the_packaged_settings_and_extra_arguments(venv, demo_key, tmp_path):
    env, key = demo_key
    log = tmp_path / "serve.log"
    command = [str(venv / "bin" / "balance-service"), "serve", "--access-logfile", "-"]
    # The kernel-chosen port proves the packaged settings were read: BIND is only read there.
    with running_gunicorn(env, log, command=command, cwd=venv.parent) as (base, _):
        assert get(base + "/v1/user/balance", key)[1]["balance"] == 10
        # gunicorn's own access line, in the packaged format, because --access-logfile reached it.
        for _ in range(50):
            if '"GET /v1/user/balance" 200' in log.read_text():
                break
            time.sleep(0.1)
        else:
            pytest.fail("no gunicorn access line in the packaged format:\n" + log.read_text())
    assert key[3:11] not in log.read_text()
