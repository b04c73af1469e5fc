"""One-time completion URLs of an attempt (SPEC "Delivery rules", Scheduler-Async).

Every callback carries ``X-Scheduler-Complete-Url`` and ``X-Scheduler-Fail-Url``:
``{public_url}/callbacks/v1/complete/<token>`` and ``.../fail/<token>``. The token is the
task id, the attempt number and the action, signed with itsdangerous (HMAC-SHA256) and
time-stamped, under a random key kept in the database (``scheduler_keys``, made by the
first process that needs it): any server on the database verifies what any worker
signed, and a restart changes nothing. The token says which attempt; the database says
whether that attempt is still the one waiting (store/completions.py).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from scheduler_core.judgement import MAX_ASYNC_TIMEOUT_S
from scheduler_core.store.base import Store

KEY_NAME = "completion_url_hmac"
SALT = "scheduler-core.completion.v1"
COMPLETION_PATH = "/callbacks/v1"
# A token is refused as expired (410) this long after it was made: the longest
# Scheduler-Async wait, plus a day for the callback itself and clocks that disagree.
TOKEN_MAX_AGE_S = 2 * MAX_ASYNC_TIMEOUT_S

Action = Literal["complete", "fail"]
ACTIONS: tuple[Action, ...] = ("complete", "fail")


class BadToken(Exception):
    """The token was not made with this database's key (or for another action)."""


class ExpiredToken(Exception):
    """The token is genuine but older than TOKEN_MAX_AGE_S."""


@dataclass(frozen=True)
class AttemptRef:
    task_id: str
    attempt: int


class CompletionTokens:
    """Makes and reads the tokens of the completion URLs with the database's shared key,
    read once, at the first use (so a process that never needs it never makes it)."""

    def __init__(self, store: Store, public_url: str):
        self._store = store
        self.public_url = public_url.rstrip("/")
        self._serializer: URLSafeTimedSerializer | None = None
        self._lock = threading.Lock()

    def _signer(self) -> URLSafeTimedSerializer:
        with self._lock:
            if self._serializer is None:
                key = self._store.shared_key(KEY_NAME)
                self._serializer = URLSafeTimedSerializer(
                    key, salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
                )
            return self._serializer

    def urls(self, task_id: str, attempt: int) -> tuple[str, str]:
        """The complete and fail URLs of attempt `attempt` of `task_id`."""
        signer = self._signer()
        base = f"{self.public_url}{COMPLETION_PATH}"
        complete, fail = (signer.dumps([task_id, attempt, action]) for action in ACTIONS)
        return f"{base}/complete/{complete}", f"{base}/fail/{fail}"

    def read(self, token: str, action: Action) -> AttemptRef:
        """The attempt `token` names for `action`. BadToken when it is forged, altered or
        made for the other action; ExpiredToken when older than TOKEN_MAX_AGE_S."""
        signer = self._signer()
        try:
            value = signer.loads(token, max_age=TOKEN_MAX_AGE_S)
        except SignatureExpired:
            raise ExpiredToken from None
        except BadSignature:
            raise BadToken from None
        if (
            not isinstance(value, list)
            or len(value) != 3
            or not isinstance(value[0], str)
            or type(value[1]) is not int
            or value[2] != action
        ):
            raise BadToken
        return AttemptRef(value[0], value[1])
