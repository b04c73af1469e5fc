"""Group commit: concurrent enqueues share one transaction and one commit.

An API thread hands its tasks to the group and waits. One writer thread takes everything
waiting, writes it all in one multi-row statement and one commit, then answers each
waiter: nobody hears "stored" before the commit that stored it. Under load the group
grows on its own (what arrives during a write goes in the next one); at light load a
group is a single request and costs one hand-over between threads.

If a group fails for a reason other than the database being unreachable, its requests
are written again one by one, so one request's bad data fails only that request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from scheduler_core.store.base import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")  # one request's items
R = TypeVar("R")  # one request's result

# A group holds at most this many items (unless one request alone holds more).
MAX_GROUP_ITEMS = 5000


@dataclass(eq=False)
class _Waiter(Generic[T, R]):
    items: Sequence[T]
    done: threading.Event = field(default_factory=threading.Event)
    result: R | None = None
    error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Callable[[list[Sequence[T]]], list[R]], name: str = "group-commit"):
        """`write(requests)` stores every request's items in one transaction and returns
        one result per request, in order; it raises if nothing was stored."""
        self._write = write
        self._name = name
        self._cond = threading.Condition()
        self._waiting: list[_Waiter[T, R]] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, items: Sequence[T]) -> R:
        """Store `items` with whatever else is waiting; return once committed."""
        waiter: _Waiter[T, R] = _Waiter(items)
        with self._cond:
            if self._closed:
                raise StoreUnavailable("the store is closed")
            self._waiting.append(waiter)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.result  # type: ignore[return-value]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if not self._waiting:
                    self._thread = None
                    return
                group = self._take()
            self._commit(group)

    def _take(self) -> list[_Waiter[T, R]]:
        group: list[_Waiter[T, R]] = []
        items = 0
        while self._waiting and (
            not group or items + len(self._waiting[0].items) <= MAX_GROUP_ITEMS
        ):
            waiter = self._waiting.pop(0)
            group.append(waiter)
            items += len(waiter.items)
        return group

    def _commit(self, group: list[_Waiter[T, R]]) -> None:
        try:
            results = self._write([w.items for w in group])
            for waiter, result in zip(group, results, strict=True):
                waiter.result = result
        except StoreUnavailable as exc:  # nothing was stored: every request hears it
            for waiter in group:
                waiter.error = exc
        except Exception as exc:
            if len(group) == 1:
                group[0].error = exc
            else:
                log.warning(
                    "a group of %d enqueues failed (%s); writing each alone", len(group), exc
                )
                for waiter in group:
                    self._commit([waiter])
                return
        finally:
            for waiter in group:
                if waiter.result is not None or waiter.error is not None:
                    waiter.done.set()
