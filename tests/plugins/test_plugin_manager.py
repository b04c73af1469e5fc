"""The plugin manager: built-ins, per-settings isolation, entry points, hook documentation."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

import scheduler_core
from scheduler_core import hookspecs
from scheduler_core.api import create_app
from scheduler_core.hookspecs import hookimpl
from scheduler_core.models import TaskFilter
from scheduler_core.plugin_manager import BUILTIN_PLUGINS, DEFAULT_PLUGINS, PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store
from tests.support.processes import run_cli

PLUGIN_MODULE = "sc_test_plugin"
PLUGIN_SOURCE = '''\
"""A third-party plugin that refuses every API request."""

from scheduler_core import hookimpl


@hookimpl
def scheduler_authorize(request, settings):
    return False
'''

SPEC_NAMES = sorted(
    name
    for name, value in vars(hookspecs).items()
    if name.startswith("scheduler_") and hasattr(value, "scheduler_core_spec")
)
# Hooks whose first non-None answer decides: an installed plugin must be able to take over.
DECISION_HOOKS = [
    name for name in SPEC_NAMES if getattr(hookspecs, name).scheduler_core_spec.get("firstresult")
]


class DenyEverything:
    @hookimpl
    def scheduler_authorize(self) -> bool:
        return False


def authorize(plugins: PluginManager, headers: dict[str, str] | None = None) -> bool:
    app = Flask(__name__)
    with app.test_request_context("/api/v1/tasks", headers=headers or {}):
        from flask import request

        return plugins.authorize(request)


def names(plugins: PluginManager) -> list[str]:
    return [str(row["name"]) for row in plugins.describe()]


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution `sc-test-plugin` declaring a `scheduler_core` entry point, on sys.path.

    Laid out as pip leaves an installed wheel: the module beside its .dist-info folder.
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / f"{PLUGIN_MODULE}.py").write_text(PLUGIN_SOURCE)
    info = site / "sc_test_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sc-test-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[scheduler_core]\nmyplugin = {PLUGIN_MODULE}\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop(PLUGIN_MODULE, None)


# -- the manager --------------------------------------------------------------------------


def test_builtins_are_registered_under_their_default_plugin_names() -> None:
    plugins = PluginManager(Settings(load_entry_points=False))

    rows = plugins.describe()

    assert [row["name"] for row in rows] == list(BUILTIN_PLUGINS)
    assert all(row["builtin"] for row in rows)
    assert {(row["distribution"], row["version"]) for row in rows} == {
        ("scheduler-core", scheduler_core.__version__)
    }
    for name in DEFAULT_PLUGINS:
        module = plugins.module(name)
        assert module is not None and module.__name__ == name


def test_two_managers_do_not_share_registrations() -> None:
    first = PluginManager(Settings(load_entry_points=False))
    second = PluginManager(Settings(load_entry_points=False))

    first.register(DenyEverything(), name="deny")

    assert "deny" in names(first)
    assert "deny" not in names(second)
    assert authorize(first) is False
    assert authorize(second) is True


def test_each_manager_answers_with_its_own_settings() -> None:
    open_api = PluginManager(Settings(load_entry_points=False))
    keyed = PluginManager(Settings(api_keys=("k1",), load_entry_points=False))

    assert authorize(open_api) is True
    assert authorize(keyed) is False
    assert authorize(keyed, {"Authorization": "Bearer k1"}) is True


def test_built_in_http_delivery_claims_http_and_https() -> None:
    plugins = PluginManager(Settings(load_entry_points=False))

    assert plugins.delivery_schemes() == frozenset({"http", "https"})


class TwoSchemes:
    @hookimpl
    def scheduler_delivery_schemes(self) -> list[str]:
        return ["Queue", "topic", "queue"]


def test_describe_names_the_schemes_each_plugin_claims() -> None:
    plugins = PluginManager(Settings(load_entry_points=False), extra_plugins=(TwoSchemes(),))

    rows = plugins.describe()

    by_name = {row["name"]: row for row in rows}
    assert by_name["scheduler_core.plugins.http_delivery"]["schemes"] == ["http", "https"]
    [registered] = [row for row in rows if row["name"] not in BUILTIN_PLUGINS]
    assert registered["schemes"] == ["queue", "topic"]  # lower case, once each, sorted
    assert registered["hooks"] == ["scheduler_delivery_schemes"]
    # Registered in code, not installed: no distribution to name.
    assert (registered["builtin"], registered["distribution"], registered["version"]) == (
        False,
        None,
        None,
    )
    assert plugins.delivery_schemes() == frozenset({"http", "https", "queue", "topic"})


# -- entry points -------------------------------------------------------------------------


def test_an_installed_plugin_is_loaded_through_its_entry_point(installed_plugin: Path) -> None:
    plugins = PluginManager(Settings(load_entry_points=True))

    rows = {row["name"]: row for row in plugins.describe()}

    assert rows["myplugin"] == {
        "name": "myplugin",
        "builtin": False,
        "distribution": "sc-test-plugin",
        "version": "0.1",
        "hooks": ["scheduler_authorize"],
        "schemes": [],
    }
    assert list(rows)[: len(BUILTIN_PLUGINS)] == list(BUILTIN_PLUGINS)


def test_load_entry_points_false_skips_installed_plugins(installed_plugin: Path) -> None:
    plugins = PluginManager(Settings(load_entry_points=False))

    assert names(plugins) == list(BUILTIN_PLUGINS)
    assert authorize(plugins) is True


@pytest.mark.parametrize(
    ("value", "loaded"), [("1", False), ("true", False), ("0", True), ("", True), (None, True)]
)
def test_scheduler_disable_plugin_autoload_decides_whether_entry_points_load(
    installed_plugin: Path, monkeypatch: pytest.MonkeyPatch, value: str | None, loaded: bool
) -> None:
    if value is None:
        monkeypatch.delenv("SCHEDULER_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    else:
        monkeypatch.setenv("SCHEDULER_DISABLE_PLUGIN_AUTOLOAD", value)

    plugins = PluginManager(Settings.from_env("postgresql://unused"))

    assert ("myplugin" in names(plugins)) is loaded


def test_an_installed_plugin_takes_over_from_the_builtin_in_the_api(
    installed_plugin: Path, store: Store, settings: Settings
) -> None:
    with_plugin = Settings(database_url=settings.database_url, load_entry_points=True)
    app = create_app(
        with_plugin, store=store, plugins=PluginManager(with_plugin), test_config={"TESTING": True}
    )
    client = app.test_client()

    listed = client.get("/api/v1/tasks")
    enqueued = client.post("/api/v1/tasks", json={"webhookUrl": "http://127.0.0.1:9/hook"})

    assert listed.status_code == 401
    assert listed.json is not None and listed.json["error"]["code"] == "unauthorized"
    assert enqueued.status_code == 401
    assert store.list_tasks(TaskFilter(), 10, None) == ([], None)
    # Health endpoints are outside /api/v1 and stay open.
    assert client.get("/healthz").status_code == 200

    without = create_app(
        settings, store=store, plugins=PluginManager(settings), test_config={"TESTING": True}
    )
    assert without.test_client().get("/api/v1/tasks").status_code == 200


@pytest.mark.slow
def test_scheduler_plugins_lists_an_installed_plugin_with_its_distribution(
    installed_plugin: Path,
) -> None:
    env = {"PYTHONPATH": str(installed_plugin), "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "0"}

    result = run_cli(None, "plugins", env=env)

    assert result.returncode == 0, result.stderr
    [row] = [line.split() for line in result.stdout.splitlines() if line.startswith("myplugin ")]
    assert row == ["myplugin", "sc-test-plugin", "0.1", "-", "scheduler_authorize"]
    disabled = run_cli(None, "plugins", env={**env, "SCHEDULER_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "myplugin" not in disabled.stdout


# -- the hook specifications --------------------------------------------------------------


def test_there_are_hook_specs_to_check() -> None:
    assert set(SPEC_NAMES) >= {
        "scheduler_deliver",
        "scheduler_delivery_schemes",
        "scheduler_authorize",
        "scheduler_retry_decision",
    }
    assert set(DECISION_HOOKS) >= {
        "scheduler_deliver",
        "scheduler_authorize",
        "scheduler_retry_decision",
    }


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_every_hook_is_documented_with_what_its_return_value_means(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name))

    assert doc, f"{name} has no docstring"
    assert "Return" in doc, f"{name}'s docstring does not say what to return"


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_every_hook_is_implemented_by_a_builtin_plugin(name: str) -> None:
    plugins = PluginManager(Settings(load_entry_points=False))

    implementing = [row["name"] for row in plugins.describe() if name in row["hooks"]]  # type: ignore[operator]

    assert implementing, f"no built-in plugin implements {name}"


@pytest.mark.parametrize("name", DECISION_HOOKS)
def test_builtin_decisions_are_trylast_so_an_installed_plugin_answers_first(name: str) -> None:
    plugins = PluginManager(Settings(load_entry_points=False))

    for plugin_name in BUILTIN_PLUGINS:
        implementation = getattr(plugins.get_plugin(plugin_name), name, None)
        if implementation is None or implementation.scheduler_core_impl["wrapper"]:
            continue  # an observer wraps the decision; it does not take it
        assert implementation.scheduler_core_impl["trylast"], (plugin_name, name)


def test_every_builtin_hook_implementation_names_a_known_hook() -> None:
    # pluggy accepts an unknown hook name silently; a typo would never be called.
    for plugin_name in DEFAULT_PLUGINS:
        module = PluginManager(Settings(load_entry_points=False)).module(plugin_name)
        implemented = [n for n, v in vars(module).items() if hasattr(v, "scheduler_core_impl")]
        assert implemented
        assert set(implemented) <= set(SPEC_NAMES), (plugin_name, implemented)
