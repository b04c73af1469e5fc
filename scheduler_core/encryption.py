"""webhookAuth at rest: encrypted under SCHEDULER_ENCRYPTION_KEY, opened only at claim.

SCHEDULER_ENCRYPTION_KEY holds one or more Fernet keys (32 url-safe base64-encoded bytes,
44 characters), separated by spaces or commas. The first encrypts every new value; every
one of them decrypts (cryptography's MultiFernet). To rotate: put a new key first and keep
the old one after it, restart every process, run `scheduler rotate-key`, then drop the old
key.

A value stored encrypted reads `fernet:<token>`. Anything else is plaintext, stored before
a key was set, and is used as it is (`scheduler rotate-key` encrypts it). The API never
decrypts: only a dispatcher does, for the task it has just claimed.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scheduler_core.models import NewTask

if TYPE_CHECKING:
    from scheduler_core.store.base import Store

ENV_NAME = "SCHEDULER_ENCRYPTION_KEY"
PREFIX = "fernet:"
ROTATE_BATCH = 500

_SEPARATORS = re.compile(r"[\s,]+")

# What lastError says when a claimed task's webhookAuth cannot be opened: nothing is sent.
NO_KEY_ERROR = (
    f"webhookAuth is stored encrypted and {ENV_NAME} is not set: the callback was not sent"
)
WRONG_KEY_ERROR = (
    f"webhookAuth cannot be decrypted with any key in {ENV_NAME} (encrypted with a key no "
    "longer configured, or damaged): the callback was not sent"
)


class EncryptionKeyError(ValueError):
    """SCHEDULER_ENCRYPTION_KEY is malformed. The message never quotes a key."""


class UnreadableAuth(Exception):
    """A stored webhookAuth no configured key opens."""


def parse_keys(raw: str | None) -> tuple[str, ...]:
    """The keys of SCHEDULER_ENCRYPTION_KEY, in order; () when unset or empty.

    A value that holds no key (`","`, `" "`) or any string that is not a Fernet key is an
    EncryptionKeyError naming the key by its position, never by its text."""
    if raw is None or raw == "":
        return ()
    keys = tuple(k for k in _SEPARATORS.split(raw) if k)
    if not keys:
        raise EncryptionKeyError(f"{ENV_NAME} is set but holds no key")
    for number, key in enumerate(keys, 1):
        if not _is_fernet_key(key):
            position = f"key {number} of {len(keys)}" if len(keys) > 1 else "its key"
            raise EncryptionKeyError(
                f"{ENV_NAME}: {position} is not a Fernet key (32 url-safe base64-encoded "
                "bytes, 44 characters; `scheduler generate-key` prints a new one)"
            )
    return keys


def _is_fernet_key(key: str) -> bool:
    try:
        raw = base64.b64decode(key.encode("ascii"), altchars=b"-_", validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return len(raw) == 32


def generate_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def is_encrypted(stored: str) -> bool:
    return stored.startswith(PREFIX)


class AuthCipher:
    """Seals webhookAuth values for storage and opens them again."""

    def __init__(self, keys: Sequence[str]):
        from cryptography.fernet import Fernet, InvalidToken, MultiFernet

        if not keys:
            raise EncryptionKeyError(f"{ENV_NAME} holds no key")
        self._fernets = [Fernet(key) for key in keys]
        self._first = self._fernets[0]
        self._all = MultiFernet(self._fernets)
        self._invalid = InvalidToken

    def seal(self, value: str) -> str:
        """`value` as stored: `fernet:` and a token made with the first key."""
        return PREFIX + self._first.encrypt(value.encode("utf-8")).decode("ascii")

    def seal_tasks(self, tasks: Sequence[NewTask]) -> list[NewTask]:
        """`tasks`, each with its webhookAuth sealed (a task without one is kept as is).

        The tasks of one request that share a webhookAuth (an array's mostly do) share its
        token: sealing costs ~20 µs a value, a quarter of the rate of arrays. Two
        rows of one request holding the same token tells a reader of the database that
        their values are equal, no more; tokens of different requests always differ."""
        sealed: dict[str, str] = {}

        def seal(value: str) -> str:
            token = sealed.get(value)
            if token is None:
                token = sealed[value] = self.seal(value)
            return token

        # replace(): every other field (queue, schedule...) kept as the task has it.
        return [
            task
            if task.webhook_auth is None
            # replace(): every other field (queue, schedule, what comes later) kept as given
            else dataclasses.replace(task, webhook_auth=seal(task.webhook_auth))
            for task in tasks
        ]

    def open(self, stored: str) -> str:
        """The plaintext of a stored value (a plaintext one is returned as it is);
        UnreadableAuth when no configured key opens it."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._all.decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
        except (self._invalid, UnicodeError, ValueError):
            raise UnreadableAuth(WRONG_KEY_ERROR) from None

    def resealed(self, stored: str) -> str | None:
        """`stored` sealed with the first key, or None when it already is; plaintext is
        sealed. UnreadableAuth when no configured key opens it."""
        if not stored.startswith(PREFIX):
            return self.seal(stored)
        token = stored[len(PREFIX) :].encode("ascii", "replace")
        try:
            self._first.decrypt(token)
            return None
        except self._invalid:
            pass
        try:
            return PREFIX + self._all.rotate(token).decode("ascii")
        except self._invalid:
            raise UnreadableAuth(WRONG_KEY_ERROR) from None


def reveal(stored: str | None, cipher: AuthCipher | None) -> tuple[str | None, str | None]:
    """(the webhookAuth to send, None), or (None, why it cannot be sent)."""
    if stored is None:
        return None, None
    if cipher is None:
        if stored.startswith(PREFIX):
            return None, NO_KEY_ERROR
        return stored, None
    try:
        return cipher.open(stored), None
    except UnreadableAuth as exc:
        return None, str(exc)


# -- rotation ------------------------------------------------------------------------------


@dataclass
class RotationResult:
    encrypted: int = 0  # plaintext values now sealed
    reencrypted: int = 0  # values sealed with an older key, now with the first
    current: int = 0  # already sealed with the first key: left alone
    changed_meanwhile: int = 0  # changed or deleted while this ran: left alone
    unreadable: list[str] = field(default_factory=list)  # task ids (schedule names) no key opens

    @property
    def seen(self) -> int:
        return (
            self.encrypted
            + self.reencrypted
            + self.current
            + self.changed_meanwhile
            + len(self.unreadable)
        )


def rotate(
    store: Store,
    cipher: AuthCipher,
    batch_size: int = ROTATE_BATCH,
    progress: Callable[[RotationResult], None] | None = None,
) -> RotationResult:
    """Seal every task's stored webhookAuth with the first key, `batch_size` rows a
    transaction; `unreadable` holds task ids.

    Safe while servers and workers run: each row is replaced only if it still holds the
    value that was read (a task deleted or changed meanwhile is left alone), and every
    process must already hold the new key list, so both the old and the new value open.
    """

    def page(after: Any) -> list[tuple[Any, str, str]]:
        return store.webhook_auth_page(after, batch_size)

    return _rotate(page, 0, store.replace_webhook_auth, cipher, progress)


def rotate_schedules(
    store: Store,
    cipher: AuthCipher,
    batch_size: int = ROTATE_BATCH,
    progress: Callable[[RotationResult], None] | None = None,
) -> RotationResult:
    """As `rotate`, for the schedules' webhookAuth; `unreadable` holds schedule names."""

    def page(after: Any) -> list[tuple[Any, str, str]]:
        return [
            (name, name, stored) for name, stored in store.schedule_auth_page(after, batch_size)
        ]

    return _rotate(page, "", store.replace_schedule_auth, cipher, progress)


def _rotate(
    page: Callable[[Any], list[tuple[Any, str, str]]],
    start: Any,
    replace: Callable[[Sequence[tuple[str, str, str]]], list[str]],
    cipher: AuthCipher,
    progress: Callable[[RotationResult], None] | None,
) -> RotationResult:
    """Walk `page(after)` (position, key, stored value) from `start`, resealing each value
    and handing the changes of each page to `replace` (compare and set)."""
    result = RotationResult()
    after = start
    while True:
        rows = page(after)
        if not rows:
            return result
        after = rows[-1][0]
        changes: list[tuple[str, str, str]] = []
        kinds: list[bool] = []  # per change: was it plaintext
        for _position, key, stored in rows:
            try:
                sealed = cipher.resealed(stored)
            except UnreadableAuth:
                result.unreadable.append(key)
                continue
            if sealed is None:
                result.current += 1
                continue
            changes.append((key, stored, sealed))
            kinds.append(not stored.startswith(PREFIX))
        if changes:
            replaced = set(replace(changes))
            for (key, _, _), plaintext in zip(changes, kinds, strict=True):
                if key not in replaced:
                    result.changed_meanwhile += 1
                elif plaintext:
                    result.encrypted += 1
                else:
                    result.reencrypted += 1
        if progress is not None:
            progress(result)
