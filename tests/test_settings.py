"""The option table, read without pytest: precedence, sources, conversion and bad values.

``settings.read`` takes plain mappings (command line, environment, ini), so the
many value cases are checked here directly; ``test_options.py`` checks the same
table the way users meet it, through pytest runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from pytest_alchemy import isolation, servers, settings
from pytest_alchemy.errors import ConfigurationError
from pytest_alchemy.settings import OPTIONS, OPTIONS_BY_NAME, Settings, read

SQLITE = "sqlite:///data/app.db"
PG = "postgresql+psycopg://app:secret@db.example/app"


def resolve(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    ini: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Settings:
    return read(cli or {}, env or {}, ini or {}, **kwargs)


def problem(
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    ini: Mapping[str, Any] | None = None,
) -> str:
    """The message of the ConfigurationError these inputs raise, checked to be one paragraph."""
    with pytest.raises(ConfigurationError) as caught:
        resolve(cli, env, ini)
    text = str(caught.value)
    assert text.startswith("pytest-alchemy: ")
    assert text.count("pytest-alchemy:") == 1
    assert "\n" not in text, "one paragraph, on one line"
    return text


# -- the table ----------------------------------------------------------------------------


def test_every_option_has_one_name_in_each_place() -> None:
    for option in OPTIONS:
        assert option.flag == "--alchemy-" + option.name.replace("_", "-")
        assert option.ini == "alchemy_" + option.name
        assert option.env == "ALCHEMY_" + option.name.upper()
        assert option.help.strip()
    assert len({option.name for option in OPTIONS}) == len(OPTIONS)


def test_settings_fields_and_defaults_match_the_table() -> None:
    fields = {item.name for item in dataclasses.fields(Settings)} - {"sources"}
    assert fields == set(OPTIONS_BY_NAME)
    defaults = Settings()
    for option in OPTIONS:
        assert getattr(defaults, option.name) == option.default, option.name
    assert resolve() == Settings(), "nothing set: every value is the default"


def test_choice_lists_are_the_registries() -> None:
    registry = isolation.Strategies()
    assert tuple(registry) == settings.ISOLATION_STRATEGIES
    for name in settings.ISOLATION_STRATEGIES:
        assert registry[name].name == name, "each built-in path loads the strategy it names"
    assert tuple(servers.SERVERS) == settings.SERVER_KINDS
    assert OPTIONS_BY_NAME["isolation"].choices == settings.ISOLATION_STRATEGIES
    assert OPTIONS_BY_NAME["server"].choices == settings.SERVER_KINDS
    assert OPTIONS_BY_NAME["leak_check"].choices == settings.LEAK_CHECK_MODES
    assert OPTIONS_BY_NAME["schema"].choices == settings.SCHEMA_SOURCES


def test_seed_aliases_are_declared() -> None:
    aliases = {alias: option.name for option in OPTIONS for alias in option.aliases}
    assert aliases == {
        "--database-uri": "url",
        "--reuse-db": "reuse_db",
        "--create-db": "create_db",
        "--drop-db": "drop_db",
        "--no-db": "no_db",
        "--echo-db": "echo",
    }


# -- precedence and sources ------------------------------------------------------------

# name -> (command line value, env value, ini value, how each one reads back)
LAYERS: dict[str, tuple[Any, str, str, tuple[Any, Any, Any]]] = {
    "url": (
        "sqlite:///cli.db",
        "sqlite:///env.db",
        "sqlite:///ini.db",
        (make_url("sqlite:///cli.db"), make_url("sqlite:///env.db"), make_url("sqlite:///ini.db")),
    ),
    "isolation": ("none", "savepoint", "none", ("none", "savepoint", "none")),
    "lock_timeout": ("1.5", "7", "12", (1.5, 7.0, 12.0)),
    "reuse_db": (True, "no", "yes", (True, False, True)),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize(
    ("given", "winner"),
    [
        (("cli", "env", "ini"), "cli"),
        (("env", "ini"), "env"),
        (("cli", "ini"), "cli"),
        (("cli", "env"), "cli"),
        (("ini",), "ini"),
        ((), "default"),
    ],
)
def test_command_line_beats_env_beats_ini_beats_default(
    name: str, given: tuple[str, ...], winner: str
) -> None:
    option = OPTIONS_BY_NAME[name]
    from_cli, from_env, from_ini, values = LAYERS[name]
    cli = {name: from_cli} if "cli" in given else {}
    env = {option.env: from_env} if "env" in given else {}
    ini = {name: from_ini} if "ini" in given else {}
    resolved = resolve(cli, env, ini, ini_file="pytest.ini")
    expected_value = {
        "cli": values[0],
        "env": values[1],
        "ini": values[2],
        "default": option.default,
    }[winner]
    expected_source = {
        "cli": f"command line {option.flag}",
        "env": f"env {option.env}",
        "ini": f"ini {option.ini} in pytest.ini",
        "default": "default",
    }[winner]
    assert getattr(resolved, name) == expected_value
    assert resolved.source(name) == expected_source
    assert (name in resolved.sources) is (winner != "default")


def test_sources_of_a_mixed_configuration() -> None:
    resolved = resolve(
        cli={"isolation": "none", "echo": True, "reuse_db": None},
        env={"ALCHEMY_LOCK_TIMEOUT": "5", "ALCHEMY_UNRELATED": "x"},
        ini={"leak_check": "warn", "url": SQLITE, "isolation": "savepoint"},
    )
    assert dict(resolved.sources) == {
        "isolation": "command line --alchemy-isolation",
        "echo": "command line --alchemy-echo",
        "lock_timeout": "env ALCHEMY_LOCK_TIMEOUT",
        "leak_check": "ini alchemy_leak_check",
        "url": "ini alchemy_url",
    }
    assert resolved.source("reuse_db") == "default", "None from the command line is unset"
    assert (resolved.isolation, resolved.echo, resolved.lock_timeout) == ("none", True, 5.0)
    assert resolved.leak_check == "warn"


def test_the_source_names_the_alias_used() -> None:
    used = {"url": "--database-uri", "reuse_db": "--reuse-db"}
    resolved = resolve(
        cli={"url": SQLITE, "reuse_db": True, "no_db": True},
        alias_used=lambda option: used.get(option.name),
    )
    assert resolved.source("url") == "command line --database-uri"
    assert resolved.source("reuse_db") == "command line --reuse-db"
    assert resolved.source("no_db") == "command line --alchemy-no-db"
    assert resolved.url == make_url(SQLITE)


def test_describe_renders_values_as_the_header_shows_them() -> None:
    resolved = resolve(
        cli={"url": PG, "keep_db": True},
        ini={"init_sql": ["CREATE EXTENSION a", "CREATE EXTENSION b"], "lock_timeout": "2.50"},
    )
    rows = {name: (value, source) for name, value, source in resolved.describe()}
    assert list(rows) == [option.name for option in OPTIONS]
    assert rows["url"] == (
        "postgresql+psycopg://app:***@db.example/app",
        "command line --alchemy-url",
    )
    assert "secret" not in repr(resolved.describe())
    assert rows["keep_db"] == ("on", "command line --alchemy-keep-db")
    assert rows["reuse_db"] == ("off", "default")
    assert rows["server"] == ("-", "default")
    assert rows["init_sql"] == ("CREATE EXTENSION a, CREATE EXTENSION b", "ini alchemy_init_sql")
    assert rows["app_sessions"] == ("-", "default")
    assert rows["lock_timeout"] == ("2.5", "ini alchemy_lock_timeout")
    assert rows["isolation"] == ("savepoint", "default")


# -- conversion ------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "Yes", "on", " y ", "t"])
def test_true_spellings(text: str) -> None:
    assert resolve(env={"ALCHEMY_REUSE_DB": text}).reuse_db is True


@pytest.mark.parametrize("text", ["0", "false", "False", "NO", "off", "n", " f "])
def test_false_spellings(text: str) -> None:
    resolved = resolve(env={"ALCHEMY_REUSE_DB": text}, ini={"reuse_db": "true"})
    assert resolved.reuse_db is False, "an explicit false in the environment beats the ini"
    assert resolved.source("reuse_db") == "env ALCHEMY_REUSE_DB"


def test_numbers_and_strings_are_converted() -> None:
    resolved = resolve(
        env={
            "ALCHEMY_LOCK_TIMEOUT": " 0.25 ",
            "ALCHEMY_SERVER": "postgresql",
            "ALCHEMY_SERVER_PORT": "0",
            "ALCHEMY_TEST_PREFIX": "ci_test_",
            "ALCHEMY_METADATA": " myapp.models:Base ",
        }
    )
    assert resolved.lock_timeout == 0.25
    assert resolved.server_port == 0
    assert isinstance(resolved.server_port, int)
    assert resolved.test_prefix == "ci_test_"
    assert resolved.metadata == "myapp.models:Base"


@pytest.mark.parametrize(
    "path", ["models:Base", "myapp.models:Base", "myapp.models.Base", "app.db:registry.metadata"]
)
def test_import_paths_accepted(path: str) -> None:
    assert resolve(ini={"metadata": path}).metadata == path


def test_list_settings_split_per_source() -> None:
    from_env = resolve(
        env={
            "ALCHEMY_INIT_SQL": "CREATE EXTENSION a\n\nCREATE EXTENSION b\n",
            "ALCHEMY_APP_SESSIONS": "app.db:Session, app.db:engine\napp.other:maker",
        }
    )
    assert from_env.init_sql == ("CREATE EXTENSION a", "CREATE EXTENSION b")
    assert from_env.app_sessions == ("app.db:Session", "app.db:engine", "app.other:maker")
    from_ini = resolve(ini={"init_sql": ["SELECT 1, 2", " "]})
    assert from_ini.init_sql == ("SELECT 1, 2",), "ini lines are kept whole"


def test_url_without_host_is_fine_with_a_throwaway_server() -> None:
    resolved = resolve(
        env={"ALCHEMY_SERVER": "postgresql", "ALCHEMY_URL": "postgresql+asyncpg:///app"}
    )
    assert resolved.server == "postgresql"
    assert resolved.url is not None
    assert resolved.url.database == "app"


# -- bad values: one paragraph naming the setting, its source and what to do -------------

BAD_VALUES = [
    pytest.param(
        {},
        {"ALCHEMY_ISOLATION": "savepiont"},
        {},
        [
            "isolation = 'savepiont'",
            "env ALCHEMY_ISOLATION",
            "Valid choices: savepoint, truncate, recreate, clone, none.",
        ],
        id="isolation-typo",
    ),
    pytest.param(
        {"isolation": "truncat"},
        {},
        {},
        [
            "isolation = 'truncat'",
            "command line --alchemy-isolation",
            "savepoint, truncate, recreate, clone, none",
        ],
        id="isolation-cli",
    ),
    pytest.param(
        {},
        {},
        {"leak_check": "loud"},
        ["leak_check = 'loud'", "ini alchemy_leak_check", "Valid choices: fail, warn, off."],
        id="leak-check",
    ),
    pytest.param(
        {},
        {},
        {"schema": "alembik"},
        ["schema = 'alembik'", "create_all, alembic, hook, none"],
        id="schema",
    ),
    pytest.param(
        {},
        {"ALCHEMY_LOCK_TIMEOUT": "soon"},
        {},
        ["lock_timeout = 'soon'", "env ALCHEMY_LOCK_TIMEOUT", "expected a number"],
        id="lock-timeout-text",
    ),
    pytest.param(
        {},
        {"ALCHEMY_LOCK_TIMEOUT": "-1"},
        {},
        ["lock_timeout = '-1'", "expected a positive number"],
        id="lock-timeout-negative",
    ),
    pytest.param(
        {"lock_timeout": "0"},
        {},
        {},
        ["lock_timeout = '0'", "command line --alchemy-lock-timeout", "positive"],
        id="lock-timeout-zero",
    ),
    pytest.param(
        {},
        {"ALCHEMY_LOCK_TIMEOUT": "nan"},
        {},
        ["lock_timeout = 'nan'", "finite"],
        id="lock-timeout-nan",
    ),
    pytest.param(
        {},
        {},
        {"lock_timeout": "inf"},
        ["lock_timeout = 'inf'", "finite"],
        id="lock-timeout-inf",
    ),
    pytest.param(
        {},
        {"ALCHEMY_SERVER": "postgresql", "ALCHEMY_SERVER_PORT": "5432.5"},
        {},
        ["server_port = '5432.5'", "expected an integer"],
        id="server-port-float",
    ),
    pytest.param(
        {},
        {"ALCHEMY_SERVER": "postgresql", "ALCHEMY_SERVER_PORT": "70000"},
        {},
        ["server_port = '70000'", "0 (pick a free one) to 65535"],
        id="server-port-range",
    ),
    pytest.param(
        {},
        {"ALCHEMY_REUSE_DB": "maybe"},
        {},
        ["reuse_db = 'maybe'", "env ALCHEMY_REUSE_DB", "true/false, yes/no, on/off or 1/0"],
        id="bool",
    ),
    pytest.param(
        {},
        {},
        {"keep_db": "2"},
        ["keep_db = '2'", "ini alchemy_keep_db", "expected a boolean"],
        id="bool-ini",
    ),
    pytest.param(
        {},
        {"ALCHEMY_URL": ""},
        {"url": SQLITE},
        ["url = '' (from env ALCHEMY_URL)", "empty", "Remove the environment variable"],
        id="url-empty-env",
    ),
    pytest.param(
        {},
        {"ALCHEMY_URL": "   "},
        {},
        ["env ALCHEMY_URL", "empty"],
        id="url-blank-env",
    ),
    pytest.param(
        {"url": ""},
        {"ALCHEMY_URL": SQLITE},
        {},
        ["command line --alchemy-url", "empty", "Remove the option"],
        id="url-empty-cli",
    ),
    pytest.param(
        {},
        {},
        {"url": ""},
        ["ini alchemy_url", "empty", "Remove the ini line"],
        id="url-empty-ini",
    ),
    pytest.param(
        {},
        {"ALCHEMY_ISOLATION": ""},
        {},
        ["isolation = ''", "empty", "(one of: savepoint, truncate, recreate, clone, none)"],
        id="choice-empty",
    ),
    pytest.param(
        {},
        {"ALCHEMY_NO_DB": ""},
        {},
        ["no_db = ''", "empty"],
        id="bool-empty",
    ),
    pytest.param(
        {},
        {"ALCHEMY_URL": "not a url"},
        {},
        ["url = 'not a url'", "not a database URL", "postgresql+psycopg://"],
        id="url-invalid",
    ),
    pytest.param(
        {},
        {"ALCHEMY_URL": "postgresql://u:secret@db:port/app"},
        {},
        ["not a database URL", "u:***@db"],
        id="url-bad-port",
    ),
    pytest.param(
        {},
        {},
        {"metadata": "models"},
        ["metadata = 'models'", "myapp.models:Base"],
        id="metadata-module-only",
    ),
    pytest.param(
        {},
        {"ALCHEMY_METADATA": "my-app/models.py:Base"},
        {},
        ["metadata = 'my-app/models.py:Base'", "expected an import path", "myapp.models:Base"],
        id="metadata-file-path",
    ),
    pytest.param(
        {},
        {},
        {"metadata": "models:"},
        ["metadata = 'models:'", "import path"],
        id="metadata-no-attribute",
    ),
    pytest.param(
        {},
        {},
        {"metadata": "models..x:Base"},
        ["import path"],
        id="metadata-double-dot",
    ),
    pytest.param(
        {},
        {"ALCHEMY_TEST_PREFIX": "test-"},
        {},
        ["test_prefix = 'test-'", "letters, digits and underscores"],
        id="prefix-dash",
    ),
    pytest.param(
        {},
        {},
        {"test_prefix": "1test_"},
        ["test_prefix = '1test_'", "start with a letter"],
        id="prefix-digit",
    ),
    pytest.param(
        {},
        {"ALCHEMY_SERVER_PORT": "5433"},
        {},
        ["server_port = 5433", "env ALCHEMY_SERVER_PORT", "alchemy_server = postgresql"],
        id="port-without-server",
    ),
    pytest.param(
        {},
        {"ALCHEMY_SERVER": "oracle"},
        {},
        ["server = 'oracle'", "Valid choices: postgresql."],
        id="server-kind",
    ),
    pytest.param(
        {"url": PG},
        {"ALCHEMY_SERVER": "postgresql"},
        {},
        [
            "db.example",
            "command line --alchemy-url",
            "env ALCHEMY_SERVER",
            "without host",
            "app:***@db.example",
        ],
        id="server-and-host",
    ),
]


@pytest.mark.parametrize(("cli", "env", "ini", "fragments"), BAD_VALUES)
def test_bad_values_are_one_clear_paragraph(
    cli: dict[str, Any], env: dict[str, str], ini: dict[str, Any], fragments: list[str]
) -> None:
    text = problem(cli, env, ini)
    for fragment in fragments:
        assert fragment in text
    assert "secret" not in text


def test_an_empty_value_never_falls_back() -> None:
    """A set-but-empty variable is an error even when a lower layer has a value."""
    for name in ("URL", "ISOLATION", "LOCK_TIMEOUT", "REUSE_DB", "METADATA", "TEST_PREFIX"):
        option = OPTIONS_BY_NAME[name.lower()]
        fallback = {"url": SQLITE, "metadata": "m:Base", "lock_timeout": "3"}
        text = problem(env={option.env: ""}, ini={option.name: fallback.get(option.name, "on")})
        assert f"env {option.env}" in text


def test_every_backend_names_both_halves_and_a_name_is_given_once() -> None:
    from pytest_alchemy.checks import SessionChecks
    from pytest_alchemy.provision import registry

    for name in registry.BACKENDS:
        assert registry.BACKENDS.provisioner_class(name).name == name
        assert issubclass(registry.BACKENDS.checks_class(name), SessionChecks)
    backends = registry.Backends(registry.BACKENDS)
    with pytest.raises(ConfigurationError, match="the backend 'sqlite' is registered twice"):
        backends.add("sqlite", registry.BackendPaths("other:Provisioner", "other:Checks"))
