"""Who may call the server and how often: API keys, a rate limit on generations, and CORS.

Every refusal is raised as a werkzeug exception, so the one error handler (`errors.py`) writes it
in the server's JSON error shape (OpenAI's under /v1/).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import time
from collections.abc import Iterable

from flask import Flask, Response, g, request
from flask_cors import CORS
from flask_limiter import ApplicationLimit, Limiter, RequestLimit
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from backend.config import Settings
from backend.controller import ADMIN_ENDPOINTS, GENERATING_ENDPOINTS, PUBLIC_ENDPOINTS

API_KEY_HEADER = "X-API-Key"
HOW_TO_SEND_A_KEY = f"Send it as `Authorization: Bearer <key>` or `{API_KEY_HEADER}: <key>`."
CORS_ALLOW_HEADERS = ("Authorization", API_KEY_HEADER, "Content-Type", "X-Request-ID")
CORS_EXPOSE_HEADERS = (
    "X-Seed",
    "X-Seeds",
    "X-Model",
    "X-Generation-Time",
    "X-Request-ID",
    "Retry-After",
    "Location",
)
CORS_MAX_AGE_SECONDS = 600  # browsers may reuse a preflight answer this long
IDENTITY_LENGTH = 12  # hex characters of a key's SHA-256 that name it in logs and rate limits


def init_access(app: Flask, settings: Settings) -> None:
    """Install API-key checks, the generation rate limit and CORS, as `settings.access` says."""
    access = settings.access
    # Authentication first: Flask runs before_request hooks in order, so the limiter (below) only
    # ever sees authenticated callers, keyed by the identity found here.
    # Admin keys are API keys too; they alone may call the ADMIN_ENDPOINTS.
    admin_keys = settings.assets.admin_keys
    _init_api_keys(app, KeyRing((*access.api_keys, *admin_keys)), KeyRing(admin_keys))
    if access.rate_limit:
        _init_rate_limit(app, access.rate_limit)
    if access.cors_origins:
        _init_cors(app, access.cors_origins)


class KeyRing:
    """The accepted API keys, kept as SHA-256 digests and compared in constant time."""

    def __init__(self, keys: Iterable[str]) -> None:
        # Digests have one length whatever the key's: comparing them cannot leak key lengths.
        self._digests = tuple(_digest(key) for key in keys)

    def __bool__(self) -> bool:
        return bool(self._digests)

    def identify(self, candidate: str) -> str | None:
        """The non-secret identity of `candidate` if it is an accepted key, else None."""
        digest = _digest(candidate)
        found = False
        for accepted in self._digests:  # every key, always: the time taken names no key
            found |= hmac.compare_digest(digest, accepted)
        return digest.hex()[:IDENTITY_LENGTH] if found else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _init_api_keys(app: Flask, keys: KeyRing, admins: KeyRing) -> None:
    @app.before_request
    def _authenticate() -> None:
        g.client_id = request.remote_addr or "unknown"
        if not keys or _is_exempt():
            return
        presented = _presented_keys()
        if not presented:
            raise _unauthorized(f"An API key is required. {HOW_TO_SEND_A_KEY}")
        identities = [keys.identify(key) for key in presented]
        identity = next((i for i in identities if i), None)
        if identity is None:
            # Never quote the key back: error bodies end up in logs and browser consoles.
            raise _unauthorized(f"The API key is not valid. {HOW_TO_SEND_A_KEY}")
        g.client_id = identity
        g.api_key_id = identity  # jobs belong to the key that submitted them
        if request.endpoint in ADMIN_ENDPOINTS and not any(map(admins.identify, presented)):
            raise Forbidden("This endpoint changes the server's state: it needs an admin key.")


def _is_exempt() -> bool:
    """Probes and CORS preflights of existing routes are answered without a key."""
    if request.endpoint is None:
        return False  # deny by default: unknown routes and methods must not reveal themselves
    return request.endpoint in PUBLIC_ENDPOINTS or _is_preflight()


def _is_preflight() -> bool:
    # Browsers never attach credentials to a preflight, so requiring a key would break CORS.
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


def _presented_keys() -> list[str]:
    """The keys the request carries, from `Authorization: Bearer` and `X-API-Key`."""
    keys = []
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    if api_key := request.headers.get(API_KEY_HEADER, "").strip():
        keys.append(api_key)
    return keys


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, www_authenticate=WWWAuthenticate("bearer"))


def _init_rate_limit(app: Flask, limit: str) -> None:
    # One Limiter (and one in-memory storage) per app: apps built in one process share nothing.
    limiter = Limiter(
        key_func=lambda: g.get("client_id") or request.remote_addr or "unknown",
        application_limits=[
            # An application limit is one budget per client shared by every generating
            # endpoint: calling a second API must not double the allowance.
            ApplicationLimit(
                limit,
                exempt_when=_is_free,
                on_breach=_note_retry_after,
                error_message=_rate_limit_message,
            )
        ],
        storage_uri="memory://",
        # A moving window means "at most N in any such span": no double burst at window edges.
        strategy="moving-window",
        # Its own headers would put Retry-After on successful responses too; we set it on 429s.
        headers_enabled=False,
    )
    limiter.init_app(app)
    app.after_request(_add_retry_after)


def _is_free() -> bool:
    """Only generations cost quota; polls, listings and preflights are free."""
    return request.endpoint not in GENERATING_ENDPOINTS or request.method == "OPTIONS"


def _note_retry_after(breached: RequestLimit) -> None:
    # Called before the 429 is raised: its message and its header then agree on the wait.
    # `window.reset_time` is exact; `reset_at` is rounded up a whole second past it.
    g.rate_limit_retry_after = max(1, math.ceil(breached.window.reset_time - time.time()))
    g.rate_limit_breached = str(breached.limit)


def _rate_limit_message() -> str:
    return (
        f"Too many generation requests: this server allows {g.rate_limit_breached} per client. "
        f"Retry in {g.rate_limit_retry_after} seconds."
    )


def _add_retry_after(response: Response) -> Response:
    # The limiter's exception carries no Retry-After of its own; clients need it to back off.
    retry_after = g.get("rate_limit_retry_after")
    if response.status_code == 429 and retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _init_cors(app: Flask, origins: tuple[str, ...]) -> None:
    wildcard = "*" in origins
    CORS(
        app,
        origins="*" if wildcard else [_exactly(origin) for origin in origins],
        send_wildcard=wildcard,  # "*" rather than echoing the origin: caches can share it
        always_send=False,  # no Origin header, no CORS headers (flask-cors sends them by default)
        allow_headers=list(CORS_ALLOW_HEADERS),
        expose_headers=list(CORS_EXPOSE_HEADERS),
        max_age=CORS_MAX_AGE_SECONDS,
    )


def _exactly(origin: str) -> re.Pattern[str]:
    # flask-cors reads an origin holding `*`, `?`, `[`, ... as a regular expression (and matches
    # only its start): an escaped, anchored pattern admits exactly the configured origin.
    return re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)
