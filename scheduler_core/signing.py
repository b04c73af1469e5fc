"""Standard Webhooks signing secrets, and signing a callback with them.

The scheme (Standard Webhooks 1.0.0, https://www.standardwebhooks.com/, the text at
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md,
"Signature scheme" and "Webhook headers"):

- a secret is ``whsec_`` followed by the base64 of 24 to 64 random bytes;
- the signed content is ``{webhook-id}.{webhook-timestamp}.{body}``, the body exactly as
  sent; the signature is ``v1,`` + base64(HMAC-SHA256(secret bytes, content));
- ``webhook-signature`` is a space-separated list of signatures, one per secret, so a
  secret can be rotated without downtime: the receiver accepts any one that matches.

``SCHEDULER_SIGNING_SECRET`` holds one or more secrets separated by white space. The
signing itself is the ``standardwebhooks`` package's, so what a receiver's Standard
Webhooks library checks is what was computed here. Error messages name a secret by its
position, never by its value.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook

ENV_NAME = "SCHEDULER_SIGNING_SECRET"
SECRET_PREFIX = "whsec_"
# The spec: "Random. At least 24 bytes (192 bits, 512 maximum)".
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class InvalidSigningSecret(ValueError):
    """A signing secret that is not ``whsec_`` + base64 of 24 to 64 bytes.

    The message says which secret (by position) is wrong and why; it never quotes it.
    """


def parse_signing_secrets(text: str | None, *, source: str = ENV_NAME) -> tuple[str, ...]:
    """The secrets in ``text`` (separated by white space), checked, in order.

    None or blank text means no signing: ``()``. Raises ``InvalidSigningSecret`` when any
    one of them is malformed (``source`` names the setting in the message).
    """
    secrets = tuple((text or "").split())
    for position, secret in enumerate(secrets, start=1):
        secret_key(secret, position=position, count=len(secrets), source=source)
    return secrets


def secret_key(secret: str, *, position: int = 1, count: int = 1, source: str = ENV_NAME) -> bytes:
    """The HMAC key a ``whsec_...`` secret stands for: the base64 after the prefix,
    decoded strictly (standard alphabet; padding may be left off).

    Raises ``InvalidSigningSecret`` naming ``source`` and the secret's position.
    """
    which = f"{source}: secret {position} of {count}" if count > 1 else source
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidSigningSecret(
            f"{which} is not a Standard Webhooks secret: it must start with {SECRET_PREFIX!r} "
            'followed by base64 (generate one with: python -c "import base64, os; '
            "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\")"
        )
    encoded = secret[len(SECRET_PREFIX) :]
    padded = encoded + "=" * (-len(encoded) % 4)
    if not _BASE64.fullmatch(padded):
        raise InvalidSigningSecret(
            f"{which} is not a Standard Webhooks secret: the part after {SECRET_PREFIX!r} "
            "must be standard base64 (A-Z, a-z, 0-9, '+', '/')"
        )
    try:
        key = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSigningSecret(
            f"{which} is not a Standard Webhooks secret: the part after {SECRET_PREFIX!r} "
            "is not valid base64"
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidSigningSecret(
            f"{which} decodes to {len(key)} bytes; a Standard Webhooks secret is "
            f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes"
        )
    return key


class Signer:
    """Signs callbacks with one or more secrets (the newest first, by convention).

    Built once per process from the checked secrets; ``headers()`` is called for every
    attempt. Holds the keys; its repr does not show them.
    """

    def __init__(self, secrets: Iterable[str], *, source: str = ENV_NAME) -> None:
        secrets = tuple(secrets)
        self._webhooks = tuple(
            Webhook(secret_key(s, position=i, count=len(secrets), source=source))
            for i, s in enumerate(secrets, start=1)
        )
        if not self._webhooks:
            raise InvalidSigningSecret(f"{source}: no signing secret given")

    def __repr__(self) -> str:
        return f"Signer(<{len(self._webhooks)} secret(s)>)"

    def headers(self, message_id: str, timestamp: int, body: bytes) -> Mapping[str, str]:
        """``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` for ``body``.

        ``timestamp`` is integer Unix seconds. ``body`` must be the exact bytes sent, as
        UTF-8 (a JSON body always is); the signature covers ``{id}.{timestamp}.{body}``.
        """
        text = body.decode("utf-8")  # strict: its re-encoding is the same bytes
        moment = datetime.fromtimestamp(timestamp, UTC)
        signatures = " ".join(w.sign(message_id, moment, text) for w in self._webhooks)
        return {
            HEADER_ID: message_id,
            HEADER_TIMESTAMP: str(timestamp),
            HEADER_SIGNATURE: signatures,
        }
