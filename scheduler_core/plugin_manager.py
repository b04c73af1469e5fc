"""A typed facade over pluggy: one method per hook, built fresh per app."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import pluggy

from scheduler_core import __version__, hookspecs, targets
from scheduler_core.hookspecs import hookimpl
from scheduler_core.judgement import clean_error
from scheduler_core.models import (
    DEFAULT_QUEUE,
    Callback,
    ClaimedTask,
    DeliveryOutcome,
    DeliveryReport,
    RecordedOutcome,
    RetryDecision,
    Task,
)
from scheduler_core.plugins import backoff_retry

if TYPE_CHECKING:
    from flask import Request

    from scheduler_core.completion import CompletionTokens
    from scheduler_core.runtime_config import RuntimeConfig
    from scheduler_core.settings import Settings
    from scheduler_core.store.base import Store

PROJECT_NAME = "scheduler_core"
ENTRY_POINT_GROUP = "scheduler_core"
# The distribution the built-in plugins ship in, as `scheduler plugins` names it.
CORE_DISTRIBUTION = "scheduler-core"

# Built-in behaviour, registered first and marked trylast so installed plugins win.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "scheduler_core.plugins.http_delivery",
    "scheduler_core.plugins.api_key_auth",
    "scheduler_core.plugins.backoff_retry",
    "scheduler_core.plugins.delivery_log",
)

# The core's own attempt pipeline, registered before the built-in modules.
CORE_PLUGINS: tuple[str, ...] = ("scheduler_core.attempt",)
# Built-in observers that keep state per plugin manager: registered as objects, one each.
OBSERVER_PLUGINS: tuple[str, ...] = ("scheduler_core.plugins.metrics",)
# Built-in plugins registered only when a setting asks and their extra is installed:
# OpenTelemetry spans (SCHEDULER_OTEL=1, pip install 'scheduler-core[otel]').
# Not in BUILTIN_PLUGINS (those every manager registers), yet listed as built-in.
OPTIONAL_PLUGINS: tuple[str, ...] = ("scheduler_core.plugins.otel",)
BUILTIN_PLUGINS: tuple[str, ...] = CORE_PLUGINS + DEFAULT_PLUGINS + OBSERVER_PLUGINS

__all__ = [
    "BUILTIN_PLUGINS",
    "CORE_PLUGINS",
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "OBSERVER_PLUGINS",
    "PluginLoadError",
    "PluginManager",
    "hookimpl",
]

log = logging.getLogger(__name__)


class PluginLoadError(RuntimeError):
    """An installed plugin could not be imported, registered or validated."""


class PluginManager:
    def __init__(self, settings: Settings, extra_plugins: tuple[object, ...] = ()):
        self.settings = settings
        # The process's target policy: the enqueue check and every transport read it.
        targets.set_policy(settings.target_policy)
        self._schemes: frozenset[str] | None = None
        # The completion URLs' signer, once a store is attached (use_store): every
        # callback then carries X-Scheduler-Complete-Url and X-Scheduler-Fail-Url.
        self.completion_tokens: CompletionTokens | None = None
        self._public_url: str | None = None
        self._latest_config: dict[str, RuntimeConfig] = {}
        self._pm = pluggy.PluginManager(PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        # The attempt pipeline calls other hooks, so it is an object holding this facade.
        from scheduler_core.dispatcher.attempt import PLUGIN_NAME, AttemptPipeline

        assert CORE_PLUGINS == (PLUGIN_NAME,)
        self._pm.register(AttemptPipeline(self), name=PLUGIN_NAME)
        for name in DEFAULT_PLUGINS:
            self._pm.register(importlib.import_module(name), name=name)
        # This manager's metrics and their registry: many apps in one process never share.
        from scheduler_core.plugins.metrics import PLUGIN_NAME as METRICS_NAME
        from scheduler_core.plugins.metrics import Metrics

        assert OBSERVER_PLUGINS == (METRICS_NAME,)
        self.metrics = Metrics()
        self._pm.register(self.metrics, name=METRICS_NAME)
        self._distributions: dict[str, tuple[str, str]] = {}  # plugin: (distribution, version)
        if settings.otel:
            self._register_otel()
        if settings.load_entry_points:
            self._load_entry_points()
        for plugin in extra_plugins:
            self._pm.register(plugin)
        try:
            # A misspelt hook (scheduler_authorise) would otherwise never run, silently.
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(str(exc)) from None

    def _register_otel(self) -> None:
        """The OpenTelemetry observer, when its packages import; without them, a warning
        (the scheduler runs as it would with SCHEDULER_OTEL unset)."""
        [name] = OPTIONAL_PLUGINS
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            log.warning(
                "SCHEDULER_OTEL is set but OpenTelemetry cannot be imported (%s); no spans. "
                "Install it with: pip install 'scheduler-core[otel]'",
                exc,
            )
            return
        self._pm.register(module.OtelObserver(), name=name)

    def _load_entry_points(self) -> None:
        """Load the `scheduler_core` entry points; a plugin that fails stops the start,
        since running without, say, an auth plugin would be worse than not running."""
        for dist in importlib.metadata.distributions():
            for entry_point in dist.entry_points:
                if entry_point.group != ENTRY_POINT_GROUP:
                    continue
                if self._pm.get_plugin(entry_point.name) or self._pm.is_blocked(entry_point.name):
                    continue
                distribution = (dist.metadata["Name"], dist.version)
                origin = " ".join(distribution)
                try:
                    plugin = entry_point.load()
                    self._pm.register(plugin, name=entry_point.name)
                except Exception as exc:
                    raise PluginLoadError(
                        f"plugin {entry_point.name!r} from {origin} failed to load: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                self._distributions[entry_point.name] = distribution

    # -- introspection, for `scheduler plugins` ------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """Every registered plugin, in registration order, as `scheduler plugins --json`
        and `GET /api/v1/plugins` show it:

        - ``name``: its registration name (the entry point's name for an installed one);
        - ``builtin``: whether scheduler-core itself ships it;
        - ``distribution``, ``version``: the package it came from (``scheduler-core`` for
          the built-ins; None for an object registered in code, e.g. by a test);
        - ``hooks``: the hooks it implements, sorted;
        - ``schemes``: the URL schemes its ``scheduler_delivery_schemes`` claims, sorted.

        Raises whatever a plugin's ``scheduler_delivery_schemes`` raises.
        """
        schemes = self._schemes_by_plugin()
        rows: list[dict[str, Any]] = []
        for name, plugin in self._pm.list_name_plugin():
            builtin = name in BUILTIN_PLUGINS or name in OPTIONAL_PLUGINS
            distribution, version = (
                (CORE_DISTRIBUTION, __version__)
                if builtin
                else self._distributions.get(name, (None, None))
            )
            rows.append(
                {
                    "name": name,
                    "builtin": builtin,
                    "distribution": distribution,
                    "version": version,
                    "hooks": sorted(h.name for h in self._pm.get_hookcallers(plugin) or []),
                    "schemes": schemes.get(name, []),
                }
            )
        return rows

    def _schemes_by_plugin(self) -> dict[str, list[str]]:
        claimed: dict[str, list[str]] = {}
        for impl in self._pm.hook.scheduler_delivery_schemes.get_hookimpls():
            if impl.wrapper or impl.hookwrapper:
                continue
            answer = cast("list[str] | None", impl.function())
            claimed[impl.plugin_name] = sorted({s.lower() for s in answer or ()})
        return claimed

    def register(self, plugin: object, name: str | None = None) -> None:
        self._pm.register(plugin, name=name)
        self._schemes = None  # a new plugin may claim new schemes

    def get_plugin(self, name: str) -> object | None:
        return self._pm.get_plugin(name)

    def module(self, name: str) -> ModuleType | None:
        plugin = self._pm.get_plugin(name)
        return plugin if isinstance(plugin, ModuleType) else None

    def use_store(self, store: Store) -> None:
        """Sign completion URLs with `store`'s shared key (the first store given)."""
        if self.completion_tokens is None:
            from scheduler_core.completion import CompletionTokens

            self.completion_tokens = CompletionTokens(store, self.public_url)

    @property
    def public_url(self) -> str:
        """The base of the completion URLs: SCHEDULER_PUBLIC_URL, or where `serve`
        listens (set once it does)."""
        if self.completion_tokens is not None:
            return self.completion_tokens.public_url
        return self._public_url or self.settings.public_url

    @public_url.setter
    def public_url(self, url: str) -> None:
        self._public_url = url.rstrip("/")
        if self.completion_tokens is not None:
            self.completion_tokens.public_url = self._public_url

    # -- the runtime config attempts decide with ------------------------------------

    def note_config(self, config: RuntimeConfig, queue: str = DEFAULT_QUEUE) -> None:
        """The newest runtime config of `queue` a dispatcher of this process read (at
        every wake-up, and at once after a change notice)."""
        self._latest_config[queue] = config

    def current_config(self, fallback: RuntimeConfig, queue: str = DEFAULT_QUEUE) -> RuntimeConfig:
        """The config an attempt in `queue` that ends now decides with (max_retries and
        backoff are read at each failure, SPEC "Precise answers"): the newest one read,
        else `fallback`, the one the attempt was claimed under."""
        return self._latest_config.get(queue) or fallback

    # -- hooks ---------------------------------------------------------------------

    def delivery_schemes(self) -> frozenset[str]:
        # Asked on every enqueue; the answer changes only when a plugin is registered.
        if self._schemes is None:
            schemes: set[str] = set()
            for answer in self._pm.hook.scheduler_delivery_schemes():
                schemes.update(s.lower() for s in answer or ())
            self._schemes = frozenset(schemes)
        return self._schemes

    def deliver(
        self, task: ClaimedTask, callback: Callback, deadline: float
    ) -> DeliveryReport | DeliveryOutcome:
        """The first delivery plugin's report; a plugin that raises, answers nothing or
        answers nonsense is a failed attempt saying so."""
        if task.auth_error is not None:  # its webhookAuth cannot be decrypted: send nothing
            return DeliveryReport.failed(task.auth_error)
        try:
            answer = self._pm.hook.scheduler_deliver(
                task=task, deadline=deadline, settings=self.settings, callback=callback
            )
        except Exception as exc:  # a plugin bug is a failed attempt, not a dead dispatcher
            error = clean_error(f"delivery plugin error: {exc!r}", task)
            # No traceback: its message may quote what the plugin was sending.
            log.warning("task=%s %s", task.id, error)
            return DeliveryReport.failed(error)
        if answer is None:
            return DeliveryReport.failed("no delivery plugin handles this URL scheme")
        if not isinstance(answer, DeliveryReport | DeliveryOutcome):
            return DeliveryReport.failed(
                f"delivery plugin error: returned {type(answer).__name__}, not a DeliveryReport"
            )
        return answer

    def run_attempt(
        self, task: ClaimedTask, deadline: float, config: RuntimeConfig
    ) -> RecordedOutcome:
        """One attempt of `task`, start to decision, through scheduler_run_attempt and
        whatever wraps it."""
        recorded: RecordedOutcome | None = self._pm.hook.scheduler_run_attempt(
            task=task, deadline=deadline, config=config, settings=self.settings
        )
        if recorded is None:
            raise RuntimeError("no plugin ran the attempt")
        return recorded

    def attempts_lost(self, lost: list[RecordedOutcome]) -> None:
        """Tell observers (scheduler_attempt_lost) of each attempt the reaper recorded as
        lost. A plugin that raises is logged, without a traceback (it may quote the
        task), and the reaper goes on."""
        for recorded in lost:
            try:
                self._pm.hook.scheduler_attempt_lost(recorded=recorded)
            except Exception as exc:
                log.warning(
                    "task=%s: a plugin failed observing a lost attempt: %s",
                    recorded.task_id,
                    type(exc).__name__,
                )

    def tasks_enqueued(self, tasks: list[Task]) -> None:
        """Tell observers (scheduler_task_enqueued) of each task just created. A plugin
        that raises is logged by type only (its message may quote the task) and the
        request goes on: the tasks are stored already."""
        for task in tasks:
            try:
                self._pm.hook.scheduler_task_enqueued(task=task, traceparent=task.traceparent)
            except Exception as exc:
                log.warning(
                    "task=%s: a plugin failed observing the enqueue: %s",
                    task.id,
                    type(exc).__name__,
                )

    def authorize(self, request: Request) -> bool:
        answer = self._pm.hook.scheduler_authorize(request=request, settings=self.settings)
        return answer is None or bool(answer)

    def retry_decision(
        self, task: ClaimedTask, outcome: DeliveryOutcome, config: RuntimeConfig
    ) -> RetryDecision:
        """The first retry plugin's decision; stale when none gives a RetryDecision. A
        plugin that raises is logged and the built-in backoff decides: a policy bug must
        not kill the delivery thread that asked, leaving the task running."""
        try:
            decision = self._pm.hook.scheduler_retry_decision(
                task=task, outcome=outcome, config=config
            )
        except Exception as exc:
            log.warning(
                "task=%s %s; the built-in backoff decides",
                task.id,
                clean_error(f"retry plugin error: {exc!r}", task),
            )
            return backoff_retry.scheduler_retry_decision(task, outcome, config)
        if not isinstance(decision, RetryDecision):
            return RetryDecision.stale()
        return decision
