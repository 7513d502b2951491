"""Settings come from the environment and bad values stop the service at start-up."""

import re

import pytest

from balance_service import create_app
from balance_service.config import ENV_SETTINGS, REMOVED, ConfigError, from_env, normalize_database_url
from tests.helpers import REPO, clean_environment


def test_units_are_left_to_the_gateway_unless_set():
    config = from_env({})
    assert config["BALANCE_UNIT"] is None
    assert config["UNLIMITED_USER_ROLES"] == frozenset()
    assert config["CORS_ORIGINS"] == "*"
    assert "SQLALCHEMY_DATABASE_URI" not in config


@pytest.mark.parametrize("name", sorted(REMOVED))
def test_a_removed_setting_stops_start_up_saying_what_replaces_it(name):
    with pytest.raises(ConfigError, match=f"^{name} is no longer read: .*gateway"):
        from_env({name: "1"})


@pytest.mark.parametrize("name", sorted(REMOVED))
def test_a_removed_setting_left_empty_is_ignored(name):
    assert "BALANCE_UNIT" in from_env({name: " "})


def test_unit_names_are_case_insensitive():
    assert from_env({"BALANCE_UNIT": "cny"})["BALANCE_UNIT"] == "CNY"
    assert from_env({"BALANCE_UNIT": "TOKENS"})["BALANCE_UNIT"] == "tokens"


def test_lists_are_split_on_commas():
    config = from_env({"UNLIMITED_USER_ROLES": "100, 10", "CORS_ORIGINS": "https://a.example, https://b.example"})
    assert config["UNLIMITED_USER_ROLES"] == {10, 100}
    assert config["CORS_ORIGINS"] == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    "env",
    [
        {"BALANCE_UNIT": "EUR"},
        {"UNLIMITED_USER_ROLES": "root"},
        {"DB_CONNECT_TIMEOUT": "0"},
        {"LOG_LEVEL": "verbose"},
    ],
)
def test_invalid_settings_are_refused_at_start_up(env, monkeypatch):
    with pytest.raises(ConfigError):
        from_env(env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError):
        create_app()


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
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "4")
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_MS", "2500")
    config = create_app().config
    assert config["SQLALCHEMY_DATABASE_URI"] == "mysql+pymysql://gateway:secret@127.0.0.1:3306/oneapi"
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["connect_args"] == {
        "connect_timeout": 4,
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
    from_env(env)
    assert env.read, "from_env read nothing from the mapping it was given"
    assert env.read <= set(ENV_SETTINGS) | set(REMOVED), env.read - set(ENV_SETTINGS)


def test_child_processes_get_none_of_the_settings_gunicorn_conf_reads(monkeypatch):
    source = (REPO / "balance_service" / "gunicorn_conf.py").read_text()
    names = set(re.findall(r"""os\.environ(?:\.get\(|\[)["'](\w+)["']""", source))
    assert {"BIND", "LOG_LEVEL", "PROMETHEUS_MULTIPROC_DIR"} <= names  # the pattern does find them
    for name in names | set(ENV_SETTINGS):
        monkeypatch.setenv(name, "from-the-developer")
    env = clean_environment(LOG_LEVEL="debug")
    assert env["LOG_LEVEL"] == "debug"
    assert not ((names | set(ENV_SETTINGS)) - {"LOG_LEVEL"}) & env.keys()


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
        from_env({"CORS_ORIGINS": value})


def test_cors_origins_star_alone_still_means_any_origin():
    assert from_env({"CORS_ORIGINS": " * "})["CORS_ORIGINS"] == "*"
