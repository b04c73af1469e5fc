"""The key of per-host backpressure: which receiver a task's callbacks go to.

``host[:port]`` of the webhook URL, the host in lower case (IPv6 in brackets), the port
only when the URL names one that is not its scheme's default. Never the userinfo: a key is
shown in metrics and on the dashboard.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_HOST_CHARS = 300


def target_host(url: str) -> str | None:
    """`url`'s host key (``"api.example.com"``, ``"127.0.0.1:8001"``, ``"[::1]:8443"``);
    None when the URL has no host (a scheme a plugin reads otherwise)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    host = host.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    return host[:MAX_HOST_CHARS]
