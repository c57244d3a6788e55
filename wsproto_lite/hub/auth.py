"""Who a connection is: JWTs (PyJWT, the ``[jwt]`` extra) and API keys, checked before or after the upgrade.

Credentials, in the order they are looked for at the upgrade request: ``Authorization: Bearer <jwt>``,
``Authorization: apikey <key>`` (server-side clients), a ``token`` query parameter, a ``token`` cookie; after
the upgrade, the ``token`` of the ``connect`` command (browsers cannot set headers on a WebSocket).

Every failure is an :class:`AuthFailure` carrying only a code (101 unauthorized, 109 token expired): the
reason is logged at debug level, never sent, so a client cannot probe which check failed.

JWTs: HS256 with a shared secret (``WSPROTO_HUB_JWT_SECRET``), RS256 or ES256 with a public key; the
accepted algorithm is pinned from the configured key (never ``none``, never HS256 with a public key as the
secret); signature, ``exp`` and ``nbf`` always, ``iss`` and ``aud`` when configured, a short leeway.
Claims are read as Centrifugo reads them (``centrifugo/internal/jwtverify/token_verifier_jwt.go``):
``sub`` (the user id; empty = anonymous, where anonymous use is allowed), ``exp``, ``expire_at`` (overrides
``exp`` for the connection's expiry; 0 = never), ``info`` (shown as ``conn_info`` in presence, join/leave
and publications), ``channels`` and ``subs`` (server-side subscriptions: the connection is subscribed to
them at ``connect``).  Our per-connection grants ride in ``caps``, shaped like Centrifugo PRO's
capabilities: ``[{"channels": ["chat:*", "news"], "allow": ["sub", "pub"]}]`` (``sub`` grants subscribe,
presence and history; ``pub`` grants publish; a trailing ``*`` matches a prefix).  Subscription tokens:
``sub``, ``channel``, ``client`` (when present, the client id it was made for), ``exp``/``expire_at``,
``info`` (shown as ``chan_info``), ``data`` (the SubscribeResult's ``data``).  ``b64info`` (base64 of
JSON text) stands for ``info`` in both kinds of token, ``b64data`` for ``data``.  Per-channel options of
``subs``: ``info``/``b64info`` (the subscription's ``chan_info``), ``data``/``b64data`` (``data`` of its
SubscribeResult); ``override`` is ignored (a namespace's presence, join/leave and recovery are the
namespace's).  A ``b64`` value that is not base64 of JSON refuses the token (Centrifugo: invalid token).

API keys are compared with :func:`hmac.compare_digest` against every configured key (no early exit) and
can be replaced at run time (:meth:`ApiKeys.replace`: SIGHUP re-reads the config file and the environment).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .protocol import DisconnectCode, ErrorCode, HubError, dumps

__all__ = [
    "ANONYMOUS",
    "ApiKeys",
    "AuthConfig",
    "AuthFailure",
    "Authenticator",
    "Identity",
    "MissingExtra",
    "SubOptions",
    "SubscriptionGrant",
    "credentials_of",
    "API_KEYS_ENV",
    "JWT_SECRET_ENV",
]

logger = logging.getLogger("wsproto_lite.hub.auth")

JWT_SECRET_ENV = "WSPROTO_HUB_JWT_SECRET"
API_KEYS_ENV = "WSPROTO_HUB_API_KEYS"
"""Comma-separated API keys, added to the config file's ``auth.api_keys``."""

_MAX_TOKEN = 8192


class MissingExtra(RuntimeError):
    """JWT auth is configured but PyJWT is not installed."""


class AuthFailure(HubError):
    """Refused credentials: an error reply with ``code`` and, after ``connect``, a ``disconnect`` push."""

    def __init__(self, code: int = ErrorCode.UNAUTHORIZED) -> None:
        super().__init__(code, "token expired" if code == ErrorCode.TOKEN_EXPIRED else "unauthorized")

    @property
    def disconnect_code(self) -> int:
        if self.code == ErrorCode.TOKEN_EXPIRED:
            return DisconnectCode.TOKEN_EXPIRED
        return DisconnectCode.UNAUTHORIZED


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified connection: its user and what its credentials grant."""

    user: str = ""
    """``""``: anonymous (or an API-key client)."""
    expires: float | None = None
    """Wall-clock expiry (the JWT's ``exp``), None for no expiry."""
    subscribe: tuple[str, ...] = ()
    """Channel patterns granted for subscribe, presence and history (``chat:*``, ``secret:room``)."""
    publish: tuple[str, ...] = ()
    trusted: bool = False
    """An API-key client: every channel, every operation."""
    key_digest: str = ""
    """SHA-256 of the API key it used (to disconnect it when the key is revoked)."""
    anonymous: bool = True
    info: str = ""
    """JSON text of the token's ``info`` claim (``conn_info``), ``""`` for none."""
    server_channels: tuple[str, ...] = ()
    """Channels of the token's ``channels`` and ``subs`` claims: server-side subscriptions."""
    sub_options: tuple[SubOptions, ...] = ()
    """The ``subs`` claim's per-channel ``info`` and ``data`` (channels without any are left out)."""

    def options_of(self, channel: str) -> SubOptions | None:
        return next((o for o in self.sub_options if o.channel == channel), None)


@dataclass(frozen=True, slots=True)
class SubOptions:
    """One channel's options in a connection token's ``subs`` claim, as JSON text (``""``: none)."""

    channel: str
    info: str = ""
    """``chan_info`` of the server-side subscription."""
    data: str = ""
    """``data`` of its SubscribeResult (in the connect result's ``subs``)."""


ANONYMOUS = Identity()


@dataclass(frozen=True, slots=True)
class SubscriptionGrant:
    """A verified subscription token: the subscription it allowed lasts as long as the token."""

    expires: float | None = None
    """Wall-clock expiry (the token's ``expire_at`` or ``exp``), None for no expiry."""
    info: str = ""
    """JSON text of the token's ``info`` claim (``chan_info``), ``""`` for none."""
    data: str = ""
    """JSON text of the token's ``data``/``b64data`` (the SubscribeResult's ``data``), ``""`` for none."""


@dataclass(frozen=True)
class AuthConfig:
    """``[auth]`` in the config file (see config.py); the defaults verify nothing and allow anonymous use."""

    jwt_secret: str | None = None
    """HS256 shared secret; prefer ``WSPROTO_HUB_JWT_SECRET`` in the environment to the config file."""
    jwt_public_key: str | None = None
    """PEM text of an RSA (RS256) or EC P-256 (ES256) public key (config: ``jwt_public_key_file``)."""
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 5.0
    """Seconds of clock skew tolerated on ``exp`` and ``nbf``."""
    api_keys: tuple[str, ...] = ()
    allow_anonymous: bool | None = None
    """Connections without credentials; default: allowed only while no authentication is configured (no
    JWT key, no API key), or where a namespace's ``allow_anonymous`` says so (authz.py)."""
    anonymous_namespaces: tuple[str, ...] | None = None
    """Namespaces anonymous connections may use (None: every non-private one)."""
    private_namespaces: tuple[str, ...] = ()
    """Namespaces whose channels need a grant in the token or a subscription token."""
    personal_namespace: str = "user"
    """``user:<id>`` channels: only user ``<id>`` may read them; only the server (or a grant) publishes."""

    @property
    def verifies_jwt(self) -> bool:
        return bool(self.jwt_secret or self.jwt_public_key)

    @property
    def authenticates(self) -> bool:
        """Whether any authentication is configured: the safer defaults apply then (authz.py)."""
        return self.verifies_jwt or bool(self.api_keys)

    @property
    def anonymous_allowed(self) -> bool:
        """``allow_anonymous``, or by default: while nothing authenticates (namespaces aside: authz.py)."""
        return self.allow_anonymous if self.allow_anonymous is not None else not self.authenticates

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "auth") -> AuthConfig:
        """Build from a config table; raises ``ValueError`` naming the key."""
        kwargs: dict[str, Any] = {}
        strings = ("jwt_secret", "issuer", "audience", "personal_namespace")
        lists = ("api_keys", "anonymous_namespaces", "private_namespaces")
        for key, value in table.items():
            if key in strings:
                if not isinstance(value, str):
                    raise ValueError(f"{where}.{key} must be a string")
                kwargs[key] = value
            elif key in lists:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{where}.{key} must be a list of strings")
                kwargs[key] = tuple(value)
            elif key == "jwt_public_key_file":
                if not isinstance(value, str):
                    raise ValueError(f"{where}.{key} must be a path")
                try:
                    kwargs["jwt_public_key"] = Path(value).read_text()
                except OSError as exc:
                    raise ValueError(f"{where}.{key}: {exc.strerror or exc}") from None
            elif key == "leeway":
                if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 300:
                    raise ValueError(f"{where}.leeway must be a number of seconds in 0-300")
                kwargs[key] = float(value)
            elif key == "allow_anonymous":
                if not isinstance(value, bool):
                    raise ValueError(f"{where}.allow_anonymous must be true or false")
                kwargs[key] = value
            else:
                raise ValueError(f"unknown key {where}.{key}")
        return cls(**kwargs)

    def with_environment(self, environ: Mapping[str, str] | None = None) -> AuthConfig:
        """Add ``WSPROTO_HUB_JWT_SECRET`` (when no secret is configured) and ``WSPROTO_HUB_API_KEYS``."""
        env = os.environ if environ is None else environ
        secret = self.jwt_secret or env.get(JWT_SECRET_ENV) or None
        extra = tuple(k.strip() for k in env.get(API_KEYS_ENV, "").split(",") if k.strip())
        return replace(self, jwt_secret=secret, api_keys=self.api_keys + extra)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKeys:
    """The configured API keys; :meth:`match` compares in constant time against every key."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys: tuple[bytes, ...] = ()
        self.digests: frozenset[str] = frozenset()
        self.replace(keys)

    def replace(self, keys: Iterable[str]) -> None:
        """Revocation: the new set takes effect for every later check."""
        unique = sorted({k for k in keys if k})
        self._keys = tuple(k.encode() for k in unique)
        self.digests = frozenset(_digest(k) for k in unique)

    def discard_digests(self, digests: Iterable[str]) -> None:
        """Revoke the keys with these SHA-256 digests (revocation from another node: only digests travel)."""
        gone = set(digests)
        if gone & self.digests:
            self._keys = tuple(k for k in self._keys if _digest(k.decode()) not in gone)
            self.digests = self.digests - gone

    def __bool__(self) -> bool:
        return bool(self._keys)

    def match(self, candidate: str) -> bool:
        given = candidate.encode("utf-8", "surrogatepass")
        found = False
        for key in self._keys:  # every key is compared: the time does not tell which one matched
            found |= hmac.compare_digest(given, key)
        return found


def credentials_of(request: Any) -> tuple[str, str] | None:
    """``("jwt", token)`` / ``("apikey", key)`` from an upgrade request, or None when it carries none."""
    authorization = request.header("Authorization")
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return ("jwt", value.strip())
        if scheme == "apikey":
            return ("apikey", value.strip())
        return ("jwt", "")  # an unknown scheme is a credential that fails, not the absence of one
    from urllib.parse import parse_qs

    token = parse_qs(request.query).get("token")
    if token:
        return ("jwt", token[0])
    cookie = request.cookies.get("token") if hasattr(request, "cookies") else None
    if cookie:
        return ("jwt", cookie)
    return None


def _import_jwt() -> Any:
    try:
        import jwt
    except ImportError:
        raise MissingExtra(
            "JWT authentication needs PyJWT: install wsproto-lite[jwt] (pip install 'PyJWT[crypto]>=2.8')"
        ) from None
    return jwt


def _patterns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)[:256]


def _caps(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(subscribe grants, publish grants) from a ``caps`` claim: ``[{"channels": [...], "allow": [...]}]``."""
    subscribe: list[str] = []
    publish: list[str] = []
    if isinstance(value, list):
        for cap in value[:64]:
            if not isinstance(cap, dict):
                continue
            channels, allow = _patterns(cap.get("channels")), cap.get("allow")
            if not isinstance(allow, list):
                continue
            if "sub" in allow:
                subscribe.extend(channels)
            if "pub" in allow:
                publish.extend(channels)
    return tuple(subscribe[:256]), tuple(publish[:256])


def _server_channels(claims: dict[str, Any]) -> tuple[str, ...]:
    """The ``channels`` claim and the keys of ``subs``: channels the connection is subscribed to."""
    channels = list(_patterns(claims.get("channels")))
    subs = claims.get("subs")
    if isinstance(subs, dict):
        channels.extend(name for name in subs if isinstance(name, str) and name and name not in channels)
    return tuple(channels[:256])


def _info(claims: dict[str, Any], name: str = "info") -> str:
    """The ``info`` claim (or ``b64info``: base64 of JSON, which wins as in Centrifugo) as JSON text (``""``
    when absent); refused when it cannot be decoded or re-encoded.  ``name="data"``: ``data``/``b64data``."""
    try:
        encoded = claims.get("b64" + name)
        if encoded:  # centrifugo token_verifier_jwt.go: base64.StdEncoding, then used as the raw JSON
            value = json.loads(base64.b64decode(encoded, validate=True))
        elif claims.get(name) is None:
            return ""
        else:
            value = claims[name]
        text = dumps(value)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError, binascii.Error):
        raise AuthFailure() from None
    if len(text) > _MAX_TOKEN:
        raise AuthFailure()
    return text


def _sub_options(claims: dict[str, Any]) -> tuple[SubOptions, ...]:
    """``subs``: ``{channel: {info, b64info, data, b64data, override}}``, those with ``info`` or ``data``."""
    subs = claims.get("subs")
    if not isinstance(subs, dict):
        return ()
    found = []
    for channel, options in list(subs.items())[:256]:
        if isinstance(channel, str) and isinstance(options, dict):
            info, data = _info(options), _info(options, "data")
            if info or data:
                found.append(SubOptions(channel, info, data))
    return tuple(found)


def _expiry(claims: dict[str, Any]) -> float | None:
    """``expire_at`` when present (0: never), else ``exp``; None for no expiry."""
    for name in ("expire_at", "exp"):
        value = claims.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return None if name == "expire_at" and value == 0 else float(value)
    return None


class Authenticator:
    """Verifies JWTs and API keys for the hub; built once at start (fails then if PyJWT is missing)."""

    def __init__(self, config: AuthConfig | None = None) -> None:
        self.config = config = config or AuthConfig()
        self.api_keys = ApiKeys(config.api_keys)
        self._jwt: Any = None
        self._key: Any = None
        self._algorithms: list[str] = []
        if config.jwt_public_key:
            self._jwt = _import_jwt()
            from cryptography.hazmat.primitives.asymmetric import ec, rsa
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            key = load_pem_public_key(config.jwt_public_key.encode())
            if isinstance(key, rsa.RSAPublicKey):
                self._algorithms = ["RS256"]
            elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
                self._algorithms = ["ES256"]
            else:
                raise ValueError("auth: the JWT public key must be RSA (RS256) or EC P-256 (ES256)")
            self._key = key
        elif config.jwt_secret:
            self._jwt = _import_jwt()
            if len(config.jwt_secret.encode()) < 32:
                raise ValueError("auth: the HS256 secret must be at least 32 bytes (RFC 7518 §3.2)")
            self._algorithms = ["HS256"]
            self._key = config.jwt_secret

    @property
    def anonymous_allowed(self) -> bool:
        return self.config.anonymous_allowed

    def decode(self, token: str, *, require_sub: bool = True) -> dict[str, Any]:
        """The claims of a valid JWT; ``AuthFailure`` (101, or 109 when only expired) otherwise."""
        if self._jwt is None or not token or len(token) > _MAX_TOKEN:
            raise AuthFailure()
        jwt = self._jwt
        required = ["sub"] if require_sub else []
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,  # pinned: the header's alg must be this one
                issuer=self.config.issuer,
                audience=self.config.audience,
                leeway=self.config.leeway,
                options={
                    "require": required,
                    "verify_aud": self.config.audience is not None,
                    "verify_iss": self.config.issuer is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            logger.debug("token expired")
            raise AuthFailure(ErrorCode.TOKEN_EXPIRED) from None
        except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
            logger.debug("token refused: %s", exc)
            raise AuthFailure() from None
        if not isinstance(claims, dict) or not isinstance(claims.get("sub", ""), str):
            raise AuthFailure()
        return claims

    def verify_token(self, token: str) -> Identity:
        claims = self.decode(token, require_sub=False)
        expire_at = claims.get("expire_at")
        if isinstance(expire_at, int | float) and expire_at and expire_at < time.time():
            raise AuthFailure(ErrorCode.TOKEN_EXPIRED)
        user = str(claims.get("sub", ""))[:256]
        subscribe, publish = _caps(claims.get("caps"))
        return Identity(
            user=user,
            expires=_expiry(claims),
            subscribe=subscribe,
            publish=publish,
            anonymous=not user,
            info=_info(claims),
            server_channels=_server_channels(claims),
            sub_options=_sub_options(claims),
        )

    def verify_api_key(self, key: str) -> Identity:
        if not key or len(key) > _MAX_TOKEN or not self.api_keys.match(key):
            raise AuthFailure()
        return Identity(trusted=True, key_digest=_digest(key), anonymous=False)

    def verify(self, credentials: tuple[str, str]) -> Identity:
        kind, value = credentials
        return self.verify_api_key(value) if kind == "apikey" else self.verify_token(value)

    def verify_subscription_token(
        self, token: str, user: str, channel: str, client: str = ""
    ) -> SubscriptionGrant | None:
        """A per-channel token: a JWT whose ``sub`` is this user, ``channel`` this channel and ``client``
        (when present) this client id; None if not."""
        try:
            claims = self.decode(token, require_sub=False)
            info, data = _info(claims), _info(claims, "data")
        except AuthFailure:
            return None
        if claims.get("sub", "") != user or claims.get("channel") != channel:
            return None
        if "client" in claims and claims["client"] != client:
            return None
        expires = _expiry(claims)
        if expires is not None and expires < time.time():
            return None
        return SubscriptionGrant(expires, info, data)


def seconds_left(identity: Identity, now: float | None = None) -> float | None:
    """Seconds until ``identity`` expires (may be negative), None when it does not."""
    if identity.expires is None:
        return None
    return identity.expires - (time.time() if now is None else now)


def grants_cover(patterns: Sequence[str], name: str) -> bool:
    """Whether a granted pattern covers a channel or a wildcard subscription's name.

    A grant ``ns:prefix*`` covers every name starting with ``ns:prefix`` (a wildcard subscription
    ``ns:prefixmore*`` included); any other grant covers exactly that name.
    """
    for pattern in patterns:
        if pattern.endswith("*"):
            if name.startswith(pattern[:-1]):
                return True
        elif pattern == name:
            return True
    return False
