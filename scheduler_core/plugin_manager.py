"""A typed facade over pluggy: one method per hook, built fresh per app."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import TYPE_CHECKING

import pluggy

from scheduler_core import hookspecs
from scheduler_core.hookspecs import hookimpl
from scheduler_core.models import DeliveryOutcome, RetryDecision

if TYPE_CHECKING:
    from flask import Request

    from scheduler_core.models import ClaimedTask
    from scheduler_core.runtime_config import RuntimeConfig
    from scheduler_core.settings import Settings

PROJECT_NAME = "scheduler_core"
ENTRY_POINT_GROUP = "scheduler_core"

# Built-in behaviour, registered first and marked trylast so installed plugins win.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "scheduler_core.plugins.http_delivery",
    "scheduler_core.plugins.api_key_auth",
    "scheduler_core.plugins.backoff_retry",
)

__all__ = ["DEFAULT_PLUGINS", "ENTRY_POINT_GROUP", "PluginManager", "hookimpl"]

log = logging.getLogger(__name__)


class PluginManager:
    def __init__(self, settings: Settings, extra_plugins: tuple[object, ...] = ()):
        self.settings = settings
        self._pm = pluggy.PluginManager(PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        for name in DEFAULT_PLUGINS:
            self._pm.register(importlib.import_module(name), name=name)
        if settings.load_entry_points:
            self._pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        for plugin in extra_plugins:
            self._pm.register(plugin)

    # -- introspection, for `scheduler plugins` ------------------------------------

    def describe(self) -> list[dict[str, object]]:
        dists = {id(plugin): dist for plugin, dist in self._pm.list_plugin_distinfo()}
        rows: list[dict[str, object]] = []
        for name, plugin in self._pm.list_name_plugin():
            dist = dists.get(id(plugin))
            hooks = sorted(h.name for h in self._pm.get_hookcallers(plugin) or [])
            rows.append(
                {
                    "name": name,
                    "builtin": name in DEFAULT_PLUGINS,
                    "distribution": (
                        f"{dist.project_name} {dist.version}" if dist is not None else None
                    ),
                    "hooks": hooks,
                }
            )
        return rows

    def register(self, plugin: object, name: str | None = None) -> None:
        self._pm.register(plugin, name=name)

    def module(self, name: str) -> ModuleType | None:
        plugin = self._pm.get_plugin(name)
        return plugin if isinstance(plugin, ModuleType) else None

    # -- hooks ---------------------------------------------------------------------

    def delivery_schemes(self) -> frozenset[str]:
        schemes: set[str] = set()
        for answer in self._pm.hook.scheduler_delivery_schemes():
            schemes.update(s.lower() for s in answer or ())
        return frozenset(schemes)

    def deliver(self, task: ClaimedTask, deadline: float) -> DeliveryOutcome:
        try:
            outcome = self._pm.hook.scheduler_deliver(
                task=task, deadline=deadline, settings=self.settings
            )
        except Exception as exc:  # a plugin bug is a failed attempt, not a dead tick
            log.exception("task=%s delivery plugin raised", task.id)
            return DeliveryOutcome(ok=False, error=f"delivery plugin error: {exc!r}"[:500])
        if outcome is None:
            return DeliveryOutcome(ok=False, error="no delivery plugin handles this URL scheme")
        return outcome

    def authorize(self, request: Request) -> bool:
        answer = self._pm.hook.scheduler_authorize(request=request, settings=self.settings)
        return answer is None or bool(answer)

    def retry_decision(
        self, task: ClaimedTask, outcome: DeliveryOutcome, config: RuntimeConfig
    ) -> RetryDecision:
        decision = self._pm.hook.scheduler_retry_decision(
            task=task, outcome=outcome, config=config
        )
        return decision if decision is not None else RetryDecision.stale()
