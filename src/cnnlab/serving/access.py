"""Who may do what on the server, checked before any route runs (:class:`AccessMiddleware`).

- Every request must name the server in its ``Host`` header: a loopback name or address, the
  address it listens on, an ``--allowed-host``, or (on a server bound beyond loopback) any IP
  address. A web page on another site whose name was made to point at 127.0.0.1 (DNS rebinding)
  sends its own name, and is refused with 403. An address cannot be pointed elsewhere by another
  site's DNS, so an exposed server takes any (the machine's addresses may be many, and change).
  A ``Host`` that is not a name or an address with an optional ``:port`` is refused with 400.
- A request may carry each of the headers checked here (:data:`SINGLE_HEADERS`) once: with two,
  this module and the route could read different ones (400).
- Predictions are open: ``GET``, ``HEAD`` and ``OPTIONS`` requests change nothing, nor do the
  routes under :data:`OPEN_POSTS`, which only read the image they are sent.
- Every other request changes the server's state (``POST /api/train``, ``POST /api/train/stop``,
  and any route added later, which is guarded unless it is added to :data:`OPEN_POSTS`). It must
  come from the server's own page or a program, not from another site (``Origin``,
  ``Sec-Fetch-Site``: 403), carry the token (``Authorization: Bearer TOKEN``: 401 without it,
  403 with another) and send JSON (415 otherwise: the form bodies a browser sends to another
  site without asking first are refused).

The token is made when the server starts (or given with ``--token`` or ``$CNNLAB_TOKEN``) and
printed in the page's URL, as Jupyter does; the page keeps it and sends it.

:class:`SecurityHeadersMiddleware` tells browsers not to show any answer inside another site's
frame (the page holds the token) nor to guess a type other than the one sent, as Jupyter does.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_ENV = "CNNLAB_TOKEN"
MIN_TOKEN_LENGTH = 16  # a shorter token could be guessed by a program that tries many
OPEN_POSTS = frozenset({"/api/predict", "/api/explain"})  # they read the image sent and change nothing
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"localhost"})
JSON_TYPES = frozenset({"application/json"})
SINGLE_HEADERS = {"host": "Host", "origin": "Origin", "content-type": "Content-Type", "authorization": "Authorization",
                  "sec-fetch-site": "Sec-Fetch-Site"}  # each read once here: a request may carry one of each
LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# A Host header: a name (dot-separated labels, a final dot allowed), an IPv4 address (which reads
# as a name) or an IPv6 address in brackets, then an optional :port. Nothing else.
HOST_HEADER = re.compile(rf"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>(?:{LABEL}\.)*{LABEL}\.?))(?::(?P<port>[0-9]{{1,5}}))?")
SECURITY_HEADERS = ((b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
                    (b"x-content-type-options", b"nosniff"))


def make_token() -> str:
    """A new random token: 32 bytes from the system's secure source, URL-safe."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    name = host.strip("[]").rstrip(".").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def canonical(host: str) -> str:
    """A name lower case without its final dot, or an address as Python writes it (``::1``)."""
    host = host.strip("[]").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.removesuffix(".")


def host_name(header: str) -> str | None:
    """The name or address in a ``Host`` header (:func:`canonical`), without its port; None when
    the header is anything but a name or an address, with an optional ``:port`` of 0-65535."""
    match = HOST_HEADER.fullmatch(header.lower())
    if match is None or (match["port"] is not None and int(match["port"]) > 65535):
        return None
    if match["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["v6"]))
        except ValueError:
            return None
    return canonical(match["name"]) if len(match["name"]) <= 254 else None


@dataclass(frozen=True)
class Access:
    """What the middleware checks against.

    Attributes:
        token: the token that state-changing requests must carry.
        bound_host: the address the server listens on (its name is accepted in ``Host``).
        allowed_hosts: more names accepted in ``Host`` (``--allowed-host``).
        page_url: the page's address without the token, named in the refusals.
    """

    token: str
    bound_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    page_url: str = "http://127.0.0.1:8000/"

    @cached_property
    def exposed(self) -> bool:
        """Whether the server listens beyond this machine."""
        return not is_loopback(self.bound_host)

    @cached_property
    def names(self) -> frozenset[str]:
        """The names accepted in ``Host`` besides loopback's, canonical (worked out once, not per request)."""
        return frozenset({canonical(self.bound_host), *map(canonical, self.allowed_hosts)}) | LOOPBACK_NAMES

    def host_allowed(self, name: str) -> bool:
        """Whether ``name`` (from :func:`host_name`) is one this server answers to."""
        if name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        # An address, unlike a name, cannot be pointed elsewhere by another site's DNS, so a server
        # that listens beyond loopback answers any address, not only its own: those may be many,
        # and change (DHCP), so they are not listed.
        return address.is_loopback or self.exposed

    def token_matches(self, authorization: str) -> bool:
        scheme, _, given = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())


class AccessMiddleware:
    """The checks of this module's docstring, as ASGI middleware, answering JSON ``{"error": ...}``."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.refusal(scope)
            if refusal is not None:
                status, message, headers = refusal
                await JSONResponse({"error": message}, status_code=status, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str, dict[str, str]] | None:
        """Why the request is refused (status, message, headers), or None."""
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            name = key.decode("latin-1").lower()
            if name in SINGLE_HEADERS and name in headers:
                return 400, f"the request carries more than one {SINGLE_HEADERS[name]} header; send one", {}
            headers[name] = value.decode("latin-1")
        host = headers.get("host")
        if host is None:
            return 400, f"the request has no Host header; open {self.access.page_url}", {}
        name = host_name(host)
        if name is None:
            return 400, (f"Host '{host}' is not a name or an address with an optional :port; "
                         f"open {self.access.page_url}"), {}
        if not self.access.host_allowed(name):
            return 403, (f"Host '{host}' is not a name this server answers to (a guard against DNS rebinding): "
                         f"open {self.access.page_url}, or start the server with --allowed-host {name}"), {}
        if scope.get("method", "GET") in SAFE_METHODS or scope["path"] in OPEN_POSTS:
            return None
        return self.owner_refusal(headers, host)

    def owner_refusal(self, headers: dict[str, str], host: str) -> tuple[int, str, dict[str, str]] | None:
        """Why a state-changing request is refused: another site, no or a wrong token, not JSON."""
        own_page = f"cannot change this server; use the page at {self.access.page_url} or a program of your own"
        origin, site = headers.get("origin"), headers.get("sec-fetch-site", "same-origin").lower()
        if origin is not None and not same_origin(origin, host):
            return 403, f"a request from another site ({origin}) {own_page}", {}
        if site not in ("same-origin", "none"):  # cross-site, or same-site: another port or subdomain
            return 403, f"a request from another site (Sec-Fetch-Site: {site}) {own_page}", {}
        authorization = headers.get("authorization")
        how = (f"open the URL that cnnlab serve printed ({self.access.page_url}?token=...), or send the header "
               "'Authorization: Bearer TOKEN' with the token it printed, or the one given by --token or $"
               + TOKEN_ENV)
        if authorization is None:
            return 401, f"this request changes the server and needs its token: {how}", {"www-authenticate": "Bearer"}
        if not self.access.token_matches(authorization):
            return 403, f"wrong token: {how}", {}
        kind = media_type(headers.get("content-type", ""))
        if kind not in JSON_TYPES:
            return 415, ("requests that change the server take a JSON body: send 'Content-Type: application/json' "
                         f"and JSON (e.g. {{}}), not {kind or 'a body without a content type'}"), {}
        return None


def media_type(content_type: str) -> str:
    """A ``Content-Type`` header's media type, without its parameters, lower case ('' for none)."""
    return content_type.split(";")[0].strip().lower()


def same_origin(origin: str, host: str) -> bool:
    """Whether an ``Origin`` header names the site that ``host`` (the request's ``Host``) is."""
    parts = urlsplit(origin.strip().lower())
    return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc == host.strip().lower()


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every answer that lacks them: no other site may show this
    server's answers in a frame (``X-Frame-Options``, CSP ``frame-ancestors``), and browsers take
    each answer as the type it is sent as (``nosniff``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                message = {**message, "headers": headers + [h for h in SECURITY_HEADERS if h[0] not in present]}
            await send(message)

        await self.app(scope, receive, send_guarded)
