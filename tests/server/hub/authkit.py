"""Test helpers for the hub's auth: keys, tokens (signed by PyJWT as an issuer would), hubs that verify."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from wsproto_lite.hub.auth import AuthConfig
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.limits import RateLimits
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces

SECRET = "test-secret-of-at-least-32-bytes-long!"
API_KEY = "k-3f9a1c0e7b5d4e2a9c8b7a6f5e4d3c2b"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_pem(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(user: str = "42", ttl: float = 3600, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user, "iat": now, "exp": now + int(ttl), **extra}


def hs256(user: str = "42", ttl: float = 3600, secret: str = SECRET, **extra: Any) -> str:
    return jwt.encode(claims(user, ttl, **extra), secret, algorithm="HS256")


def rs256(user: str = "42", **extra: Any) -> str:
    return jwt.encode(claims(user, **extra), RSA_KEY, algorithm="RS256")


def es256(user: str = "42", **extra: Any) -> str:
    return jwt.encode(claims(user, **extra), EC_KEY, algorithm="ES256")


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def unsigned(user: str = "42") -> str:
    """``alg: none``: a token with no signature at all."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims(user)).encode())}."


def opened(namespaces: dict[str, NamespaceOptions], anonymous: bool = False) -> dict[str, NamespaceOptions]:
    """``namespaces`` with client publishing (and anonymous use) turned on, as a config file does: once
    authentication is configured, the built-in namespaces leave both off."""
    extra: dict[str, Any] = {"allow_anonymous": True} if anonymous else {}
    return {name: replace(o, allow_publish=True, **extra) for name, o in namespaces.items()}


#: The built-in namespaces (clients publish in them) plus a personal one (``user:<id>``) and a private one
#: (``secret``).
NAMESPACES = {
    **opened(DEFAULT_NAMESPACES),
    # wildcards allowed here on purpose: the authorization must still refuse ``user:*``
    "user": NamespaceOptions(presence=True, history_size=10, history_ttl=60, allow_wildcards=True),
    "secret": NamespaceOptions(
        presence=True, history_size=10, history_ttl=60, allow_publish=True, allow_wildcards=True
    ),
}


def auth_config(**overrides: Any) -> AuthConfig:
    base: dict[str, Any] = {"jwt_secret": SECRET, "api_keys": (API_KEY,), "private_namespaces": ("secret",)}
    base.update(overrides)
    return AuthConfig(**base)


def hub_config(rate_limits: RateLimits | None = None, **auth: Any) -> HubConfig:
    config = HubConfig(port=0, auth=auth_config(**auth), namespaces=Namespaces(dict(NAMESPACES)))
    if rate_limits is not None:
        config.rate_limits = rate_limits
    return config
