"""docker-compose.yml and .env.example, read as files (no Docker needed): every AGR_*
setting can reach every app container from the env file, the compose file's own
`environment` holds only the stack's wiring (which the env file must not override), no
secret has a default, and the example is a valid production configuration."""

import re
from pathlib import Path

import yaml

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
EXAMPLE = ROOT / ".env.example"
APP_SERVICES = {"migrate", "api", "perception-worker", "perception-cpu-worker", "reasoning-worker", "sweeper", "cli"}
# Set by docker-compose.yml itself, over the env file: this stack's Postgres and Redis, and
# where its volumes are mounted in the image.
WIRING = {"AGR_DATABASE_URL", "AGR_BROKER_URL", "AGR_DATA_DIR"}
# Per role, each from a ${...} the env file can still set (the GPU worker's devices).
ROLE_OVERRIDES = {"perception-worker": {"AGR_ASR_DEVICE": "AGR_GPU_ASR_DEVICE", "AGR_ALM_DEVICE": "AGR_GPU_ALM_DEVICE"}}
SECRET = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY\b|API_KEY|ACCESS_KEY", re.I)


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _settings_variables() -> set[str]:
    return {f"AGR_{name.upper()}" for name in Settings.model_fields}


def _app_services(compose: dict) -> dict:
    return {name: s for name, s in compose["services"].items()
            if "build" in s or "AGR_IMAGE" in str(s.get("image", ""))}


def test_every_setting_reaches_every_app_container_from_the_env_file():
    services = _app_services(_compose())
    assert APP_SERVICES <= set(services), sorted(services)
    settings = _settings_variables()
    for name, service in services.items():
        env_files = service.get("env_file")
        env_files = [env_files] if isinstance(env_files, str) else list(env_files or [])
        assert any(f.endswith(".env}") or f == ".env" for f in env_files), \
            f"{name} takes no env file ({env_files}): settings not listed in it cannot reach it"
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: environment as a mapping, please"
        overrides = ROLE_OVERRIDES.get(name, {})
        for variable, value in environment.items():
            if not variable.startswith("AGR_"):
                continue
            assert variable in settings, f"{name} sets {variable}, which is no setting of core/settings.py"
            if variable in overrides:
                assert f"${{{overrides[variable]}:-" in str(value), \
                    f"{name}: {variable} must stay settable from the env file (${{{overrides[variable]}:-...}})"
            else:
                assert variable in WIRING, (f"{name} pins {variable}={value!r} over the env file: only the stack's "
                                            f"wiring ({sorted(WIRING)}) belongs in `environment`")
    assert ROLE_OVERRIDES["perception-worker"].keys() <= set(services["perception-worker"]["environment"])
    for variable in ("AGR_ASR_DEVICE", "AGR_ALM_DEVICE"):  # the GPU worker's models on its GPU by default
        assert services["perception-worker"]["environment"][variable].endswith(":-cuda}")


def test_no_secret_has_a_default():
    text = COMPOSE.read_text()
    for variable, default in re.findall(r"\$\{([A-Za-z0-9_]+):?-([^}]*)\}", text):
        assert not SECRET.search(variable), f"${{{variable}}} has a default ({default!r}) in docker-compose.yml"
    postgres = _compose()["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?"), postgres["POSTGRES_PASSWORD"]
    for name, service in _app_services(_compose()).items():
        url = (service.get("environment") or {}).get("AGR_DATABASE_URL", "")
        assert "${POSTGRES_PASSWORD:?" in url, f"{name}: {url}"


def test_the_example_is_a_production_configuration():
    compose_variables = set(re.findall(r"\$\{([A-Za-z0-9_]+)", COMPOSE.read_text()))
    lines = [line for line in EXAMPLE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    example = dict(line.split("=", 1) for line in lines)
    for variable in (v for v in example if v.startswith("AGR_")):  # a misspelt one would silently do nothing
        assert variable in _settings_variables() or variable in compose_variables, \
            f".env.example sets {variable}: neither a setting nor used by docker-compose.yml"
    for variable in compose_variables:
        if re.search(r"\$\{" + variable + r":\?", COMPOSE.read_text()):
            assert example.get(variable, None) == "", f"{variable}: required, so listed, and left for the operator"
    settings = Settings(_env_file=EXAMPLE)  # parses: every value is a valid setting
    assert settings.alm_model and "caption" in settings.coarse_tools  # the GPU worker runs an ALM
    assert settings.asr_model != "tiny.en" and settings.llm_base_url
    assert example["AGR_GPU_ASR_DEVICE"] == example["AGR_GPU_ALM_DEVICE"] == "cuda"
