"""Settings read from the environment, checked in fresh processes configured as production would be."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

BASE_DIR = Path(settings.BASE_DIR)

PRINT_SETTINGS = (
    "import json, django\n"
    "django.setup()\n"
    "from django.conf import settings\n"
    "print(json.dumps([settings.DEBUG, settings.JWT_KEY, settings.SIMPLE_JWT['SIGNING_KEY']]))\n"
)


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run(["manage.py", *args], env)


def settings_seen(env: dict[str, str]) -> list:
    """[DEBUG, JWT_KEY, the key simplejwt verifies with], as a process started with `env` sees them."""
    result = run(["-c", PRINT_SETTINGS], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- check --deploy -----------------------------------------------------------------------------


def test_deploy_check_is_clean_with_production_settings(production_env):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_the_only_silenced_check_is_the_https_redirect_left_to_the_ingress(production_env):
    # TLS ends at the ingress (contract: plain HTTP on port 3000 unless SECURE_SSL_REDIRECT is set),
    # so W008 is silenced then, and only then.
    result = manage("check", "--deploy", env={**production_env, "SECURE_SSL_REDIRECT": "true"})

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


# --- JWT_KEY ------------------------------------------------------------------------------------


def test_without_jwt_key_the_service_refuses_to_start_naming_it(production_env):
    env = {k: v for k, v in production_env.items() if k != "JWT_KEY"}

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: JWT_KEY is not set" in result.stderr
    assert "Set JWT_KEY (or JWT_KEY_FILE)" in result.stderr


def test_jwt_key_can_come_from_a_file(production_env, tmp_path):
    key_file = tmp_path / "jwt_key"
    key_file.write_text("key-from-a-mounted-secret-0123456789\n")
    env = {k: v for k, v in production_env.items() if k != "JWT_KEY"} | {"JWT_KEY_FILE": str(key_file)}

    assert manage("check", env=env).returncode == 0
    _, jwt_key, signing_key = settings_seen(env)
    assert jwt_key == signing_key == "key-from-a-mounted-secret-0123456789"


def test_an_empty_jwt_key_file_is_refused(production_env, tmp_path):
    key_file = tmp_path / "jwt_key"
    key_file.write_text("\n")
    env = {k: v for k, v in production_env.items() if k != "JWT_KEY"} | {"JWT_KEY_FILE": str(key_file)}

    result = manage("check", env=env)

    assert result.returncode != 0
    assert "JWT_KEY is not set" in result.stderr


def test_jwt_key_wins_over_jwt_key_file(production_env, tmp_path):
    key_file = tmp_path / "jwt_key"
    key_file.write_text("from-the-file")
    env = {**production_env, "JWT_KEY_FILE": str(key_file)}

    assert settings_seen(env)[1] == production_env["JWT_KEY"]


# --- DEBUG --------------------------------------------------------------------------------------


def test_debug_is_off_unless_set(production_env):
    assert "DEBUG" not in production_env
    assert settings_seen(production_env)[0] is False
    assert settings_seen({**production_env, "DEBUG": ""})[0] is False


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("false", False), ("0", False)])
def test_debug_reads_plain_booleans(production_env, value, expected):
    assert settings_seen({**production_env, "DEBUG": value})[0] is expected


@pytest.mark.parametrize("value", ["maybe", "TRUE!", "2"])
def test_a_debug_value_that_is_not_a_boolean_is_refused(production_env, value):
    result = manage("check", env={**production_env, "DEBUG": value})

    assert result.returncode != 0
    assert f"ImproperlyConfigured: DEBUG must be a boolean (true/false), got {value!r}" in result.stderr


# --- without JWT_KEY, the one sentence that says so is all a process prints ------------------------


def run_to_exit(args: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run a process to its end; its exit code and every line it printed, stdout and stderr together."""
    result = subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120
    )
    return result.returncode, result.stdout.decode(errors="replace").splitlines()


def assert_only_the_jwt_key_sentence(returncode: int, lines: list[str]) -> None:
    assert returncode != 0
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith("ImproperlyConfigured: JWT_KEY is not set: "), lines[0]
    assert lines[0].endswith("Set JWT_KEY (or JWT_KEY_FILE) and start again."), lines[0]


@pytest.fixture
def env_without_jwt_key(production_env) -> dict[str, str]:
    return {k: v for k, v in production_env.items() if k != "JWT_KEY"}


@pytest.mark.parametrize("command", [["run_listeners"], ["migrate", "--noinput"], ["check"], ["mint_token"]])
def test_manage_py_without_jwt_key_prints_only_why(env_without_jwt_key, command):
    assert_only_the_jwt_key_sentence(*run_to_exit(["manage.py", *command], env_without_jwt_key))


def gunicorn(env: dict[str, str]) -> tuple[int, list[str]]:
    from testsupport.processes import free_port

    args = ["-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{free_port()}", "ticketing_orders.wsgi"]
    return run_to_exit(args, {**env, "HOME": env["DATA_DIR"], "WEB_CONCURRENCY": "1"})


def test_gunicorn_without_jwt_key_prints_only_why(env_without_jwt_key):
    returncode, lines = gunicorn(env_without_jwt_key)

    assert_only_the_jwt_key_sentence(returncode, lines)
    # The same sentence as the settings' own refusal.
    assert lines == run_to_exit(["manage.py", "check"], env_without_jwt_key)[1]


def test_gunicorn_with_an_empty_jwt_key_file_prints_only_why(env_without_jwt_key, tmp_path):
    key_file = tmp_path / "jwt_key"
    key_file.write_text("\n")

    assert_only_the_jwt_key_sentence(*gunicorn({**env_without_jwt_key, "JWT_KEY_FILE": str(key_file)}))


def test_gunicorn_with_an_unreadable_jwt_key_file_says_so(env_without_jwt_key, tmp_path):
    returncode, lines = gunicorn({**env_without_jwt_key, "JWT_KEY_FILE": str(tmp_path / "missing")})

    assert returncode != 0
    assert len(lines) == 1 and lines[0].startswith("ImproperlyConfigured: JWT_KEY_FILE cannot be read: "), lines


def test_mongodb_waits_are_bounded_and_configurable(production_env):
    """Offline (no MongoDB can run here): the settings give pymongo every timeout, from the environment."""
    pytest.importorskip("django_mongodb_backend")
    script = "import json, django; django.setup(); from django.conf import settings; " + (
        "print(json.dumps(settings.DATABASES['default']['OPTIONS']))"
    )
    env = {**production_env, "DATABASE_URL": "mongodb://127.0.0.1:1/orders", "MONGODB_TIMEOUT_MS": "7000"}
    result = run(["-c", script], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "serverSelectionTimeoutMS": 5000,
        "connectTimeoutMS": 3000,
        "socketTimeoutMS": 10000,
        "timeoutMS": 7000,
    }
