"""Which pages may talk to the server, and what a browser may do with its answers.

A server on 127.0.0.1 is still reachable from any web page the user opens, by two routes:

- DNS rebinding: evil.example first resolves to the attacker's machine, then to 127.0.0.1,
  and its page then talks to this server as a same-origin site. The request still carries
  `Host: evil.example`, so only the names this server is served under are accepted: the
  loopback names 127.0.0.1, localhost and [::1] when it listens on loopback, the --host
  given otherwise, each with the port it listens on (a page of another local server on
  127.0.0.1:3000 is another origin).
- A cross-site request (a form posting a photo, a WebSocket opened by any page: WebSockets
  are exempt from the same-origin policy). A browser says where the page came from in
  `Origin`, so one that is not this server's is refused too. No Origin at all is a client
  that is not a browser page (curl, a script), which could send any Host anyway.

Refused: 403 with the JSON error for HTTP; for the WebSocket, a close with 1008 (policy
violation) before the handshake is accepted, which uvicorn sends as a 403 too.

Listening on all interfaces (0.0.0.0, ::), the server's names are not known here: the
loopback names, this machine's host name and any literal IP address are accepted (a name
typed as a number cannot be rebound).

SecurityHeaders adds to every HTTP answer what keeps a page of another site from framing
this one (clickjacking: X-Frame-Options, CSP frame-ancestors) and a browser from guessing a
type for a download (X-Content-Type-Options).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from urllib.parse import urlsplit

from starlette.responses import JSONResponse

# The addresses that mean "every interface of this machine" (--host).
ALL_INTERFACES = ("0.0.0.0", "::", "")

log = logging.getLogger("emotion.serve")

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
HOST_HEADER = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?")


def bracketed(host: str) -> str:
    """A host as it appears in a URL: an IPv6 address in brackets, names in lower case."""
    host = host.lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


class ServedNames:
    """The host names a server listening on `host` answers to (see the module docstring)."""

    def __init__(self, host: str):
        self.any_ip = host in ALL_INTERFACES
        names = {bracketed(host)} if host not in ALL_INTERFACES else set()
        if self.any_ip or is_loopback(host):
            names |= LOOPBACK_NAMES
        if self.any_ip:
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.names = frozenset(names)

    def accepts(self, name: str) -> bool:
        name = bracketed(name)
        return name in self.names or (self.any_ip and is_ip_literal(name))


class HostAndOrigin:
    """ASGI middleware: HTTP requests and WebSockets whose Host or Origin is not this
    server's are refused (403, or a 1008 close) before any route sees them."""

    def __init__(self, app, host: str = "127.0.0.1"):
        self.app, self.served = app, ServedNames(host)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        why = self.refusal(scope)
        if why is None:
            return await self.app(scope, receive, send)
        log.warning("%s %s: 403 %s", scope.get("method", "WebSocket"), scope.get("path"), why)
        if scope["type"] == "http":
            return await JSONResponse({"error": why}, status_code=403)(scope, receive, send)
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})

    def refusal(self, scope) -> str | None:
        """Why this request is refused, or None."""
        headers = dict(scope.get("headers") or [])
        server = scope.get("server")
        port = server[1] if server else None  # None: a Unix socket, no port to compare
        host = headers.get(b"host", b"").decode("latin-1")
        found = HOST_HEADER.fullmatch(host)
        host_port = found and int(found[2] or DEFAULT_PORTS.get(scope.get("scheme"), 80))
        if not (found and self.served.accepts(found[1]) and port in (None, host_port)):
            return (f"Host {host!r} is not a name this server is served under "
                    f"(emotion serve --host)")
        origin = headers.get(b"origin")
        if origin is not None and not self.same_origin(origin.decode("latin-1"), port):
            return f"a page of another origin ({origin.decode('latin-1')}) may not use this server"
        return None

    def same_origin(self, origin: str, port: int | None) -> bool:
        try:
            url = urlsplit(origin)
            origin_port = url.port or DEFAULT_PORTS.get(url.scheme)
        except ValueError:  # "null" (a sandboxed or file page), or not a URL
            return False
        return (url.scheme in ("http", "https") and bool(url.hostname)
                and self.served.accepts(url.hostname) and port in (None, origin_port))


FRAME_ANCESTORS = "frame-ancestors 'none'"


class SecurityHeaders:
    """ASGI middleware: X-Frame-Options, CSP frame-ancestors and X-Content-Type-Options on
    every HTTP answer (added to a Content-Security-Policy the route already set)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"x-frame-options", b"x-content-type-options")]
                csp = [v.decode("latin-1") for k, v in headers
                       if k.lower() == b"content-security-policy"]
                headers = [(k, v) for k, v in headers if k.lower() != b"content-security-policy"]
                policy = "; ".join(csp + [FRAME_ANCESTORS])
                headers += [(b"content-security-policy", policy.encode("latin-1")),
                            (b"x-frame-options", b"DENY"),
                            (b"x-content-type-options", b"nosniff")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
