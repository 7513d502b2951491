"""Settings come from the environment and bad values stop the service at start-up."""

import dataclasses
import runpy

import pytest

from balance_service import create_app
from balance_service.config import (
    DB_CONNECT_TIMEOUT,
    ENV_SETTINGS,
    REMOVED,
    ConfigError,
    Rate,
    Settings,
    normalize_database_url,
)
from tests.helpers import GUNICORN_SETTINGS, REPO, clean_environment


def test_without_settings_the_gateway_decides_the_unit_and_every_default_applies():
    settings = Settings.from_env({})
    assert settings.balance_unit is None
    assert settings.unlimited_user_roles == frozenset()
    assert settings.cors_origins == "*"
    assert settings.auth_failure_limit == Rate(20, 60)
    assert settings.database_url is None and settings.bind == "127.0.0.1:8000"


def test_the_settings_cannot_be_changed_once_parsed():
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.balance_unit = "CNY"


def test_no_password_of_a_url_setting_shows_in_the_settings_repr():
    parsed = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://gateway:db-secret@127.0.0.1/oneapi",
            "LOG_DATABASE_URL": "mysql://reader:log-secret@127.0.0.1/logs",
            "RATELIMIT_STORAGE_URI": "redis://:redis-secret@127.0.0.1:6379/0",
        }
    )
    assert parsed.database_url.endswith("@127.0.0.1/oneapi")
    shown = repr(parsed)
    assert "db-secret" not in shown and "log-secret" not in shown and "redis-secret" not in shown


def test_unit_names_are_case_insensitive():
    assert Settings.from_env({"BALANCE_UNIT": "cny"}).balance_unit == "CNY"
    assert Settings.from_env({"BALANCE_UNIT": "TOKENS"}).balance_unit == "tokens"


def test_lists_are_split_on_commas():
    settings = Settings.from_env(
        {"UNLIMITED_USER_ROLES": "100, 10", "CORS_ORIGINS": "https://a.example, https://b.example"}
    )
    assert settings.unlimited_user_roles == {10, 100}
    assert settings.cors_origins == ("https://a.example", "https://b.example")


def test_at_most_fifteen_variables_are_read():
    assert len(ENV_SETTINGS) <= 15


@pytest.mark.parametrize("name", sorted(REMOVED))
def test_a_removed_variable_that_is_set_stops_the_start_up_naming_its_replacement(name, monkeypatch):
    with pytest.raises(ConfigError, match=f"{name} is no longer read: .+"):
        Settings.from_env({name: "1"})
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError, match=name):
        create_app()


@pytest.mark.parametrize("name", sorted(REMOVED))
def test_a_removed_variable_left_empty_is_ignored(name):
    assert Settings.from_env({name: " "}) == Settings.from_env({})


@pytest.mark.parametrize(
    "env",
    [
        {"BALANCE_UNIT": "EUR"},
        {"UNLIMITED_USER_ROLES": "root"},
        {"DB_STATEMENT_TIMEOUT_MS": "-1"},
        {"PROXY_FIX_X_FOR": "one"},
        {"ALERT_ALLOW_PRIVATE_TARGETS": "perhaps"},
        {"AUTH_FAILURE_LIMIT": "5/0 minutes"},
        {"LOG_LEVEL": "verbose"},
    ],
)
def test_invalid_settings_are_refused_at_start_up(env, monkeypatch):
    with pytest.raises(ConfigError, match=next(iter(env))):
        Settings.from_env(env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        create_app()


def test_gunicorn_reads_the_same_settings_with_the_same_parser(monkeypatch):
    """gunicorn_conf.py loads config.py by path: a bad value stops gunicorn with the service's own message."""
    monkeypatch.setenv("BIND", "127.0.0.1:9999")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    namespace = runpy.run_path(str(REPO / "balance_service" / "gunicorn_conf.py"))
    assert (namespace["bind"], namespace["loglevel"]) == ("127.0.0.1:9999", "warning")
    monkeypatch.setenv("LOG_LEVEL", "verbose")
    with pytest.raises(SystemExit, match="LOG_LEVEL"):
        runpy.run_path(str(REPO / "balance_service" / "gunicorn_conf.py"))


@pytest.mark.parametrize("url", ["postgres://u@h/db", "postgresql://u@h/db", "postgresql+psycopg2://u@h/db"])
def test_postgresql_urls_use_the_psycopg2_driver(url):
    assert normalize_database_url(url) == "postgresql+psycopg2://u@h/db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:p@h:3306/db", "mysql+pymysql://u:p@h:3306/db"),
        ("mysql+pymysql://u@h/db", "mysql+pymysql://u@h/db"),
        ("mariadb://u@h/db", "mariadb+pymysql://u@h/db"),
    ],
)
def test_mysql_urls_use_the_pymysql_driver(url, expected):
    assert normalize_database_url(url) == expected


def test_mysql_url_from_the_environment_gets_pymysql_utf8mb4_and_timeouts(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://gateway:secret@127.0.0.1:3306/oneapi")
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "2500")
    config = create_app().config
    assert config["SQLALCHEMY_DATABASE_URI"] == "mysql+pymysql://gateway:secret@127.0.0.1:3306/oneapi"
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["connect_args"] == {
        "connect_timeout": DB_CONNECT_TIMEOUT,
        "charset": "utf8mb4",
        "read_timeout": 2.5,
        "write_timeout": 2.5,
    }
    # MySQL closes idle connections after wait_timeout (as low as 300 s on hosted servers).
    assert options["pool_recycle"] < 300
    assert options["pool_pre_ping"] is True


def test_other_database_urls_are_left_alone():
    assert normalize_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_without_database_url_the_embedded_sqlite_file_lives_in_the_instance_folder(tmp_path, monkeypatch):
    app = create_app({"TESTING": True})
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{app.instance_path}/balance.sqlite3"


def test_database_url_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    assert create_app().config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/x.db"


class _RecordingEnvironment(dict):
    """An environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, name, default=None):
        self.read.add(name)
        return super().get(name, default)

    def __getitem__(self, name):
        self.read.add(name)
        return super().__getitem__(name)

    def __contains__(self, name):
        self.read.add(name)
        return super().__contains__(name)


def test_env_settings_lists_every_variable_from_env_reads():
    """The tests clear ENV_SETTINGS so that a developer's own settings cannot leak in; a new setting must join it."""
    env = _RecordingEnvironment()
    Settings.from_env(env)
    assert env.read, "from_env read nothing from the mapping it was given"
    assert env.read <= {*ENV_SETTINGS, *REMOVED}, env.read - {*ENV_SETTINGS, *REMOVED}


def test_child_processes_get_none_of_the_service_or_gunicorn_settings(monkeypatch):
    for name in (*ENV_SETTINGS, *REMOVED, *GUNICORN_SETTINGS):
        monkeypatch.setenv(name, "from-the-developer")
    env = clean_environment(LOG_LEVEL="debug")
    assert env["LOG_LEVEL"] == "debug"
    assert not ({*ENV_SETTINGS, *REMOVED, *GUNICORN_SETTINGS} - {"LOG_LEVEL"}) & env.keys()


@pytest.mark.parametrize(
    "value",
    [
        "https://*example.com",
        "https://a.*.example.com",
        "https://*.com",
        "*.example.com",
        "https://*",
        "*, https://a.example",
        "https://(a|b).example.com",
        "https://a.example.com$",
        "https://[ab].example.com",
        "https://a?.example.com",
        "ftp://*.example.com",
        "https://*.example.com/path",
    ],
)
def test_cors_origins_with_any_other_use_of_regex_characters_stop_the_start_up(value):
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        Settings.from_env({"CORS_ORIGINS": value})


def test_cors_origins_star_alone_still_means_any_origin():
    assert Settings.from_env({"CORS_ORIGINS": " * "}).cors_origins == "*"
