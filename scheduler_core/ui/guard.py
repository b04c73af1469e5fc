"""Who may use the dashboard, and which requests may change anything.

Every /ui request passes, in this order:

1. The Host check of an open API (no SCHEDULER_API_KEYS): a Host that is not an address
   the server listens on nor a name in SCHEDULER_ALLOWED_HOSTS is refused 403, as for the
   API (a DNS-rebinding page could otherwise read the dashboard and press its buttons).
2. For a POST, the CSRF check: the form's `csrf` field must equal the `scheduler_ui_csrf`
   cookie (a double-submit token: the cookie is HttpOnly and SameSite=Strict, so another
   site can neither read it nor have it sent), and the request must come from this origin
   (`Origin`, else `Referer`; `Sec-Fetch-Site` when the browser sends it). Otherwise 403
   and nothing changes. A token bound to a server secret would break behind several
   servers sharing one database; the cookie needs none.
3. Authorization through `scheduler_authorize`, the API's hook: the key the login form
   stored in the `scheduler_ui_key` cookie becomes `Authorization: Bearer <key>` on a copy
   of the request, so the built-in key check and any installed auth plugin decide as they
   would for the API. When the hook lets a request without a key through (no API keys
   set), there is no login. A refused page redirects to /ui/login.

The key is never written into a page, a URL or a log line.
"""

from __future__ import annotations

import hmac
import io
import logging
import secrets
from urllib.parse import urlencode, urlsplit

from flask import Request, Response, g, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from scheduler_core.ui.blueprint import (
    NAV,
    bp,
    error_page,
    host_policy,
    local_path,
    page,
    plugins,
    settings,
)

log = logging.getLogger(__name__)

KEY_COOKIE = "scheduler_ui_key"
CSRF_COOKIE = "scheduler_ui_csrf"
COOKIE_PATH = "/ui"
CSRF_FIELD = "csrf"
MAX_KEY_LENGTH = 4096
# Pages any visitor may load: the sign-in form itself, and the public assets it uses.
OPEN_ENDPOINTS = frozenset({"ui.login", "ui.static"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)


def _usable_key(value: str | None) -> str | None:
    """`value` when it can be an API key (printable ASCII, as SCHEDULER_API_KEYS holds),
    so it can go into a header; else None."""
    if not value or len(value) > MAX_KEY_LENGTH:
        return None
    if not all(" " <= char <= "~" for char in value):
        return None
    return value.strip() or None


def authorized(key: str | None) -> bool:
    """Whether `scheduler_authorize` lets the current request through when it carries
    `key` (or no key) as `Authorization: Bearer`. The hook sees a copy of the request,
    headers, method and path included, without its body."""
    environ = dict(request.environ)
    environ.pop("HTTP_AUTHORIZATION", None)
    if key is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    environ["wsgi.input"] = io.BytesIO(b"")
    environ["CONTENT_LENGTH"] = "0"
    return plugins().authorize(Request(environ, populate_request=False))


def signed_in_key() -> str | None:
    return _usable_key(request.cookies.get(KEY_COOKIE))


def csrf_token() -> str:
    """This browser's CSRF token (made on its first page, set as a cookie with it)."""
    token: str | None = g.get("ui_csrf")
    if token is None:
        token = _usable_key(request.cookies.get(CSRF_COOKIE))
        if token is None or len(token) < 32:
            token = secrets.token_urlsafe(32)
            g.ui_new_csrf = token
        g.ui_csrf = token
    return token


def renew_csrf_token() -> None:
    """A fresh token after signing in or out, so one seen before does not carry over."""
    g.ui_csrf = g.ui_new_csrf = secrets.token_urlsafe(32)


def _request_origin() -> str | None:
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
    return None


def _cross_site_refusal() -> str | None:
    """Why this POST may not have come from one of our own pages, or None."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"it was sent from another site ({fetch_site})"
    origin = _request_origin()
    policy = host_policy()
    host = request.environ.get("HTTP_HOST")
    if origin is not None and not (policy.same_origin(origin, host) or policy.lists_origin(origin)):
        return "it was sent from another origin"
    cookie = request.cookies.get(CSRF_COOKIE, "")
    presented = request.form.get(CSRF_FIELD, "")
    # As bytes: compare_digest refuses str with non-ASCII characters (a forged field).
    if not cookie or not presented or not hmac.compare_digest(cookie.encode(), presented.encode()):
        return "its form token is missing or out of date"
    return None


@bp.before_request
def _guard() -> BaseResponse | None:
    if not settings().api_keys and not host_policy().allows_host(request.environ.get("HTTP_HOST")):
        return error_page(
            403,
            "Host not allowed",
            "This Host name is not an address the server listens on; add it to "
            "SCHEDULER_ALLOWED_HOSTS, or set SCHEDULER_API_KEYS.",
        )
    if request.endpoint == "ui.static":
        return None
    if request.method == "POST":
        refusal = _cross_site_refusal()
        if refusal is not None:
            log.warning("dashboard refused a POST to %s: %s", request.path, refusal)
            return error_page(
                403,
                "Refused",
                f"Nothing was changed: {refusal}. Reload the page and try again.",
            )
    if authorized(signed_in_key()):
        g.ui_authorized = True
        return None
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if request.method == "GET" and request.headers.get("Sec-Fetch-Site") == "cross-site":
        # A link from another site: the browser withholds the SameSite=Strict cookie from
        # this navigation, not from a reload of the page by itself.
        return page("reload.html")
    return redirect(f"/ui/login?{urlencode({'next': _this_page()})}", 303)


def _this_page() -> str:
    """Where to come back after signing in: this page, or for a POST the page it was
    sent from."""
    if request.method == "GET":
        return local_path(request.full_path.rstrip("?"))
    referer = urlsplit(request.referrer or "")
    return local_path(referer.path + (f"?{referer.query}" if referer.query else ""))


@bp.after_request
def _headers(response: Response) -> Response:
    if request.endpoint == "ui.static":
        return response
    new_token = g.get("ui_new_csrf")
    if new_token is not None:
        response.set_cookie(
            CSRF_COOKIE,
            new_token,
            path=COOKIE_PATH,
            httponly=True,
            samesite="Strict",
            secure=request.is_secure,
        )
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def _template_context() -> dict[str, object]:
    return {
        "csrf_token": csrf_token,
        "signed_in": signed_in_key() is not None and g.get("ui_authorized", False),
        "nav": NAV if g.get("ui_authorized") else (),
    }


# -- signing in and out ----------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse:
    next_path = local_path(request.values.get("next"))
    if request.method == "GET":
        if g.get("ui_authorized"):
            return redirect(next_path, 303)
        return page("login.html", next_path=next_path)
    key = _usable_key(request.form.get("key"))
    if key is None or not authorized(key):
        log.warning("dashboard sign-in refused from %s", request.remote_addr)
        return page("login.html", 401, next_path=next_path, error="That key was not accepted.")
    response = redirect(next_path, 303)
    response.set_cookie(
        KEY_COOKIE,
        key,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    renew_csrf_token()
    log.info("dashboard sign-in from %s", request.remote_addr)
    return response


@bp.post("/logout")
def logout() -> BaseResponse:
    response = redirect("/ui/login", 303)
    response.delete_cookie(
        KEY_COOKIE, path=COOKIE_PATH, httponly=True, samesite="Strict", secure=request.is_secure
    )
    renew_csrf_token()
    return response
