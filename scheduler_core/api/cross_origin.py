"""Browsers and the API: the Host and Origin checks of an open API, and CORS.

Applies to /api/ paths only, before authentication:

- While the API is open (no SCHEDULER_API_KEYS), a request whose Host is not an address the
  server listens on nor a name in SCHEDULER_ALLOWED_HOSTS is refused with 403
  `forbidden`, details.reason `host_not_allowed` (a DNS-rebinding page); one whose Origin
  is neither listed in SCHEDULER_CORS_ORIGINS nor the server's own origin is refused with
  403 `forbidden`, reason `origin_not_allowed` (a cross-site page, `text/plain` POSTs
  included). A request without
  an Origin header (curl, a server-side client) is not a cross-site browser request.
- With API keys, a page cannot use the API without a key, so neither check applies (a
  proxy or a container may then use any Host name).
- Either way, a listed origin gets CORS headers (the origin echoed, `Vary: Origin`) and its
  preflight OPTIONS is answered 204 without a key; a preflight from any other origin is
  refused with 403.

/healthz, /readyz and /metrics are not under /api/: orchestrators' probes reach them by
whatever Host (a pod IP, a service name), and they change nothing.
"""

from __future__ import annotations

from flask import Flask, Response, request

from scheduler_core.api.errors import ApiError
from scheduler_core.http_guard import HostPolicy
from scheduler_core.settings import Settings

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOWED_HEADERS = "Authorization, Content-Type, Traceparent"
EXPOSED_HEADERS = "Location, Retry-After, WWW-Authenticate"
PREFLIGHT_MAX_AGE_S = "600"


def _shown(value: str) -> str:
    return value if len(value) <= 200 else value[:200] + "..."


def install(app: Flask, settings: Settings, policy: HostPolicy, prefix: str) -> None:
    """Register the checks as the app's first before_request hook (call it before the
    authentication hook is registered) and the CORS headers as an after_request hook."""

    @app.before_request
    def _check_host_and_origin() -> Response | None:
        if not request.path.startswith(prefix):
            return None
        host = request.environ.get("HTTP_HOST")
        origin = request.headers.get("Origin")
        is_open = not settings.api_keys
        if is_open and not policy.allows_host(host):
            raise ApiError(
                403,
                "forbidden",
                f"Host {_shown(host or '')!r} is not an address this server listens on; add "
                "the name to SCHEDULER_ALLOWED_HOSTS, or set SCHEDULER_API_KEYS.",
                {"reason": ["host_not_allowed"]},
            )
        listed = origin is not None and policy.lists_origin(origin)
        if (
            request.method == "OPTIONS"
            and origin is not None
            and ("Access-Control-Request-Method" in request.headers)
        ):
            if not listed:
                raise ApiError(
                    403,
                    "forbidden",
                    f"Origin {_shown(origin)!r} is not in SCHEDULER_CORS_ORIGINS.",
                    {"reason": ["origin_not_allowed"]},
                )
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE_S
            return response  # CORS headers added below
        if is_open and origin is not None and not listed and not policy.same_origin(origin, host):
            raise ApiError(
                403,
                "forbidden",
                f"Origin {_shown(origin)!r} may not use this API; add it to "
                "SCHEDULER_CORS_ORIGINS.",
                {"reason": ["origin_not_allowed"]},
            )
        return None

    @app.after_request
    def _cors_headers(response: Response) -> Response:
        if not request.path.startswith(prefix):
            return response
        if policy.cors_origins:
            response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin is not None and policy.lists_origin(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
