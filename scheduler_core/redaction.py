"""Keeping a task's secrets out of what users read: lastError, attempt errors, logs.

A receiver may echo the Authorization header it got in any shape: verbatim, in another
letter case, JSON-escaped (``\\/``, ``\\u00e9``), HTML-escaped (``&amp;``), URL-encoded
(``%20``), folded across lines, with NULs between its characters. Matching is therefore
done on a *skeleton* of the text: escapes decoded, white space and control characters
dropped, letters case-folded. Every span of the original text whose skeleton spells a
secret is replaced by ``[redacted]``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import unquote

from scheduler_core.models import ClaimedTask

REDACTED = "[redacted]"
# Credential parts shorter than this are not hunted for on their own (the whole
# webhookAuth value always is): "ab" would blot out half of any message.
MIN_SECRET_PART = 4

_BACKSLASH = re.compile(
    r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|x([0-9a-fA-F]{2})|([/\"'\\])|([nrtbf]))"
)
_PERCENT_RUN = re.compile(r"(?:%[0-9a-fA-F]{2})+")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def secrets_of(task: ClaimedTask) -> list[str]:
    """What must never show: the webhookAuth value, its credential part (after the scheme
    word), a Basic credential decoded, the URL's userinfo (and, with no webhookAuth, the
    Basic credential the HTTP client makes of it) and its query values."""
    whole: list[str] = []
    parts: list[str] = []
    auth = task.webhook_auth
    if auth:
        whole.append(auth)
        scheme, _, credential = auth.strip().partition(" ")
        credential = credential.strip()
        if credential:
            parts.append(credential)
            if scheme.lower() == "basic":
                parts.extend(_basic_parts(credential))
    userinfo = _userinfo(task.webhook_url)
    if userinfo:
        whole.append(userinfo)
        user, _, password = userinfo.partition(":")
        parts += [password, unquote(password)]
        if not auth:  # then the HTTP client sends the userinfo as Basic credentials
            plain = f"{unquote(user)}:{unquote(password)}"
            whole.append(base64.b64encode(plain.encode("latin-1", "replace")).decode())
    parts.extend(query_values(task.webhook_url))
    secrets = whole + [p for p in parts if len(p) >= MIN_SECRET_PART]
    return secrets + [e for secret in secrets for e in _encodings(secret)]


def _encodings(secret: str) -> list[str]:
    """The secret as a receiver might echo it encoded: base64 (standard and URL-safe,
    without padding, so padded and unpadded both match) and hex."""
    found: list[str] = []
    # UTF-8, and ISO-8859-1, in which a header value goes on the wire
    for raw in {secret.encode("utf-8", "replace"), secret.encode("latin-1", "replace")}:
        found += [
            base64.b64encode(raw).decode().rstrip("="),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
            raw.hex(),
        ]
    return found


def redact(text: str, secrets: Iterable[str], *, cut_at_end: bool = False) -> str:
    """`text` with every span that spells a secret replaced by ``[redacted]``.

    `cut_at_end`: the text was cut from a longer one, so a secret may begin at its end and
    be cut off: a trailing start of a secret (MIN_SECRET_PART characters or more) goes too.
    """
    skeleton, spans = _skeleton(text)
    found: list[tuple[int, int]] = []
    for secret in secrets:
        wanted = _skeleton(secret)[0]
        if not wanted:
            continue
        at = skeleton.find(wanted)
        while at != -1:
            found.append((spans[at][0], spans[at + len(wanted) - 1][1]))
            at = skeleton.find(wanted, at + 1)
        if cut_at_end:
            for size in range(len(wanted) - 1, MIN_SECRET_PART - 1, -1):
                if skeleton.endswith(wanted[:size]):
                    found.append((spans[len(skeleton) - size][0], len(text)))
                    break
    for start, end in reversed(_merged(found)):
        text = text[:start] + REDACTED + text[end:]
    return text


def redact_bytes(body: bytes, secrets: Iterable[str]) -> bytes:
    """`body` with each secret, as UTF-8 or ISO-8859-1 bytes (the header was sent as the
    latter), replaced whatever the ASCII letter case: before decoding, so an echo survives
    no decoding error in the text."""
    for secret in sorted(secrets, key=len, reverse=True):
        for encoded in {secret.encode("utf-8"), secret.encode("latin-1", "ignore")}:
            if encoded:
                body = re.sub(re.escape(encoded), REDACTED.encode(), body, flags=re.IGNORECASE)
    return body


# -- the skeleton -------------------------------------------------------------------------


def _skeleton(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The characters that spell `text` once escapes are decoded, white space and control
    characters dropped and case folded; and for each, the span of `text` it came from."""
    chars: list[str] = []
    spans: list[tuple[int, int]] = []
    at = 0
    while at < len(text):
        decoded, end = _decode_at(text, at)
        for ch in decoded:
            if ch.isspace() or unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"}:
                continue
            for folded in ch.casefold():
                chars.append(folded)
                spans.append((at, end))
        at = end
    return "".join(chars), spans


def _decode_at(text: str, at: int) -> tuple[str, int]:
    """What the escape starting at `at` stands for, and where it ends; or the one char."""
    ch = text[at]
    if ch == "\\":
        match = _BACKSLASH.match(text, at)
        if match:
            code = match.group(1) or match.group(2) or match.group(3)
            if code:
                return _chr(int(code, 16)), match.end()
            return (match.group(4) or " "), match.end()  # \n \t ... are white space
    elif ch == "%":
        match = _PERCENT_RUN.match(text, at)
        if match:
            raw = bytes(int(h, 16) for h in match.group(0).split("%")[1:])
            try:
                return raw.decode("utf-8"), match.end()
            except UnicodeDecodeError:
                return raw.decode("latin-1"), match.end()
    elif ch == "&":
        match = _ENTITY.match(text, at)
        if match:
            decoded = html.unescape(match.group(0))
            if decoded != match.group(0):
                return decoded, match.end()
    return ch, at + 1


def _chr(code: int) -> str:
    try:
        return chr(code)
    except ValueError:
        return "\ufffd"


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _basic_parts(credential: str) -> list[str]:
    try:
        decoded = base64.b64decode(credential, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return []
    _, _, password = decoded.partition(":")
    return [decoded, password]


def _userinfo(url: str) -> str:
    authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    return authority.rpartition("@")[0]


# -- URLs as users read them ----------------------------------------------------------------

# What the API shows in place of a URL's credentials and query values.
MASK = "***"


def query_values(url: str) -> list[str]:
    """Every value in `url`'s query string (a parameter without `=` is a value too), as
    written: a receiver echoing the URL echoes them, and any may be a token."""
    query = url.partition("#")[0].partition("?")[2]
    values = []
    for pair in re.split("[&;]", query):
        key, eq, value = pair.partition("=")
        values.append(value if eq else key)
    return [v for v in values if v]


@functools.lru_cache(maxsize=1024)  # the tasks of an array mostly share their URL
def masked_url(url: str) -> str:
    """`url` as the API shows it: its userinfo, each query value and its fragment replaced
    by ``***``; scheme, host, port, path and query keys as written."""
    if "@" not in url and "?" not in url and "#" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    end = min(ends) if ends else len(rest)
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        authority = f"{MASK}@{authority.rpartition('@')[2]}"
    return scheme + sep + authority + _masked_tail(tail)


def _masked_tail(tail: str) -> str:
    before_hash, hash_sign, fragment = tail.partition("#")
    path, question, query = before_hash.partition("?")
    if query:
        query = "&".join(_masked_pair(pair) for pair in query.split("&"))
    return path + question + query + hash_sign + (MASK if fragment else "")


def _masked_pair(pair: str) -> str:
    key, eq, value = pair.partition("=")
    if not eq:
        return MASK if key else key
    return f"{key}={MASK}" if value else pair


# In free text (a log line, a driver's error): a URL's userinfo, and a query string.
_TEXT_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#\"'<>]*@")
_TEXT_QUERY = re.compile(r"\?([^\s\"'<>#]+)")


# PostgreSQL's DETAIL of a refused row quotes every column, webhook_auth among them.
_FAILING_ROW = re.compile(r"(Failing row contains )\([^\n]*")


def scrub(text: str) -> str:
    """`text` with the userinfo of every URL in it and the values of every query string
    replaced by ``***``, and a database's quote of a whole row dropped: for lines whose
    URLs came from elsewhere (a library's log line, a traceback), where the secrets are
    not known one by one."""
    if "Failing row" in text:
        text = _FAILING_ROW.sub(r"\1(...)", text)
    if "@" in text:
        text = _TEXT_USERINFO.sub(rf"\1{MASK}@", text)
    if "?" in text:
        text = _TEXT_QUERY.sub(lambda m: "?" + _masked_tail("?" + m.group(1))[1:], text)
    return text
