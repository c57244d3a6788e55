"""Authentication: every failure mode refused (401 before the upgrade, or a disconnect after ``connect``),
the header, query and cookie paths, API keys and their revocation, expiry and ``refresh``."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from wsproto_lite import Request
from wsproto_lite.hub.auth import AuthConfig, Authenticator, AuthFailure, MissingExtra, credentials_of
from wsproto_lite.hub.protocol import DisconnectCode, ErrorCode
from wsproto_lite.server.client import connect
from wsproto_lite.server.errors import HandshakeError

from .authkit import (
    API_KEY,
    EC_KEY,
    RSA_KEY,
    SECRET,
    _b64,
    auth_config,
    caps,
    claims,
    es256,
    hs256,
    hub_config,
    public_pem,
    rs256,
    unsigned,
)
from .conftest import HubThread, Raw

# -- the verifier ------------------------------------------------------------------------------------------


def _code(authenticator: Authenticator, token: str) -> int:
    with pytest.raises(AuthFailure) as info:
        authenticator.verify_token(token)
    assert info.value.message in ("unauthorized", "token expired")  # never why
    return info.value.code


def test_valid_tokens_for_each_key_type() -> None:
    hs = Authenticator(auth_config()).verify_token(hs256("7", caps=caps(["chat:*"], ["chat:x"])))
    assert hs.user == "7" and hs.subscribe == ("chat:*",) and hs.publish == ("chat:x",) and not hs.anonymous
    assert hs.expires is not None and hs.expires > time.time()
    assert Authenticator(AuthConfig(jwt_public_key=public_pem(RSA_KEY))).verify_token(rs256("r")).user == "r"
    assert Authenticator(AuthConfig(jwt_public_key=public_pem(EC_KEY))).verify_token(es256("e")).user == "e"


def _hs256_signed_with(key: bytes, payload: dict[str, Any]) -> str:
    """The RS256 -> HS256 confusion attack: an HMAC made with the server's public key as the secret."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(payload).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def test_each_failure_mode_is_refused() -> None:
    auth = Authenticator(auth_config(issuer="https://issuer", audience="hub", leeway=0))
    good = {"iss": "https://issuer", "aud": "hub"}
    assert auth.verify_token(hs256(**good)).user == "42"
    unauthorized, expired = ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED
    assert _code(auth, "") == unauthorized
    assert _code(auth, "not a jwt") == unauthorized
    assert _code(auth, hs256(secret="another-secret-of-at-least-32-bytes", **good)) == unauthorized
    assert _code(auth, unsigned()) == unauthorized  # alg: none
    assert _code(auth, rs256(**good)) == unauthorized  # an algorithm that is not the configured one
    assert _code(auth, hs256(ttl=-60, **good)) == expired
    assert _code(auth, hs256(nbf=int(time.time()) + 600, **good)) == unauthorized
    assert _code(auth, hs256(iss="https://other", aud="hub")) == unauthorized
    assert _code(auth, hs256(iss="https://issuer", aud="other")) == unauthorized
    assert _code(auth, hs256()) == unauthorized  # issuer and audience required when configured
    no_sub = jwt.encode({"exp": int(time.time()) + 60, **good}, SECRET, algorithm="HS256")
    assert auth.verify_token(no_sub).anonymous  # Centrifugo: no ``sub`` = anonymous (allowed or not: hub.py)
    assert _code(auth, hs256(expire_at=int(time.time()) - 5, **good)) == expired
    assert _code(auth, hs256(**good)[:-2] + "xx") == unauthorized  # a tampered signature
    rsa = Authenticator(AuthConfig(jwt_public_key=public_pem(RSA_KEY)))
    assert _code(rsa, _hs256_signed_with(public_pem(RSA_KEY).encode(), claims())) == unauthorized
    assert _code(rsa, es256()) == unauthorized
    assert _code(rsa, unsigned()) == unauthorized
    assert _code(Authenticator(AuthConfig()), hs256()) == unauthorized  # no key configured


def test_leeway_tolerates_small_skew() -> None:
    assert Authenticator(auth_config(leeway=30)).verify_token(hs256(ttl=-5)).user == "42"


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Authenticator(AuthConfig(jwt_secret="short"))
    with pytest.raises(ValueError, match="RSA"):
        Authenticator(AuthConfig(jwt_public_key=public_pem(ec.generate_private_key(ec.SECP384R1()))))


def test_missing_pyjwt_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jwt", None)  # import jwt -> ImportError
    with pytest.raises(MissingExtra, match=r"wsproto-lite\[jwt\]"):
        Authenticator(AuthConfig(jwt_secret=SECRET))
    assert Authenticator(AuthConfig()).anonymous_allowed  # without JWT config nothing is imported


def test_api_keys_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSPROTO_HUB_API_KEYS", " env-key-1 ,env-key-2,")
    monkeypatch.setenv("WSPROTO_HUB_JWT_SECRET", SECRET)
    config = AuthConfig(api_keys=("file-key",)).with_environment()
    assert config.jwt_secret == SECRET and not config.anonymous_allowed
    auth = Authenticator(config)
    for key in ("file-key", "env-key-1", "env-key-2"):
        assert auth.verify_api_key(key).trusted
    for key in ("", "env-key", "file-key ", "x" * 10000):
        with pytest.raises(AuthFailure):
            auth.verify_api_key(key)
    auth.api_keys.replace(["env-key-2"])
    with pytest.raises(AuthFailure):
        auth.verify_api_key("file-key")


def _request(target: str = "/ws", **headers: str) -> Request:
    return Request("GET", target, [(k.replace("_", "-"), v) for k, v in headers.items()])


def test_credentials_are_found_in_header_query_and_cookie() -> None:
    assert credentials_of(_request()) is None
    assert credentials_of(_request(Authorization="Bearer abc")) == ("jwt", "abc")
    assert credentials_of(_request(Authorization="ApiKey k1")) == ("apikey", "k1")
    assert credentials_of(_request(Authorization="Basic dTpw")) == ("jwt", "")  # fails, never ignored
    assert credentials_of(_request("/ws?token=q1")) == ("jwt", "q1")
    assert credentials_of(_request(Cookie="a=1; token=c1")) == ("jwt", "c1")


# -- over the wire -----------------------------------------------------------------------------------------


@pytest.fixture
def secure() -> Iterator[HubThread]:
    h = HubThread(hub_config())
    yield h
    h.stop()


def _open(h: HubThread, path: str = "/connection/websocket", **headers: str) -> Raw:
    url = f"ws://127.0.0.1:{h.hub_server.port}{path}"
    return Raw(url, connect(url, timeout=10, compression=False, headers=headers))


def _refused(h: HubThread, path: str = "/connection/websocket", **headers: str) -> bytes:
    with pytest.raises(HandshakeError) as info:
        _open(h, path, **headers)
    assert info.value.status == 401
    return info.value.body


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        unsigned(),
        hs256(secret="another-secret-of-at-least-32-bytes"),
        hs256(ttl=-60),
        hs256(nbf=int(time.time()) + 600),
        rs256(),
    ],
    ids=["garbage", "alg-none", "bad-signature", "expired", "not-yet-valid", "wrong-algorithm"],
)
def test_bad_tokens_get_401_before_the_upgrade_on_every_path(secure: HubThread, token: str) -> None:
    bodies = {
        _refused(secure, Authorization=f"Bearer {token}"),
        _refused(secure, f"/connection/websocket?token={token}"),
        _refused(secure, Cookie=f"token={token}"),
    }
    assert bodies == {b"unauthorized\n"}  # the same answer whatever failed: no oracle
    assert secure.call(lambda: secure.hub.stats.auth_failures) == 3


def test_good_tokens_on_every_path(secure: HubThread) -> None:
    for r in (
        _open(secure, Authorization=f"Bearer {hs256('a')}"),
        _open(secure, f"/connection/websocket?token={hs256('a')}"),
        _open(secure, Cookie=f"token={hs256('a')}"),
    ):
        result = r.ok("connect")
        assert (
            secure.user_of(result["client"]) == "a"
            and result["expires"] is True
            and 3500 < result["ttl"] <= 3600
        )
        r.close()


def test_connect_token_failures_disconnect_with_an_auth_code(secure: HubThread) -> None:
    for token, code in (
        (unsigned(), ErrorCode.UNAUTHORIZED),
        ("", ErrorCode.UNAUTHORIZED),  # anonymous: not allowed once a JWT key is configured
    ):
        r = Raw(secure.url)
        assert r.error("connect", {"token": token} if token else {}) == code
        assert r.closed() == (DisconnectCode.INVALID_TOKEN, "unauthorized")  # 3500: terminal, no push
        assert r.pushes == []
        r.close()
    # expired: 109 and the connection stays for the SDK to close; it gets a new token and reconnects
    r = Raw(secure.url)
    assert r.error("connect", {"token": hs256(ttl=-60)}) == ErrorCode.TOKEN_EXPIRED
    result = r.ok("connect", {"token": hs256("b")})
    assert secure.user_of(result["client"]) == "b"
    r.close()


def test_api_key_clients_and_revocation(secure: HubThread) -> None:
    assert _refused(secure, Authorization="apikey wrong") == b"unauthorized\n"
    client = _open(secure, Authorization=f"apikey {API_KEY}")
    assert secure.user_of(client.ok("connect")["client"]) == ""
    client.ok("subscribe", {"channel": "user:42"})  # trusted: every channel
    revoked = secure.call(secure.hub.revoke_api_keys, ["a-new-key"])
    assert revoked == 1
    assert client.closed()[0] == DisconnectCode.INVALID_TOKEN
    assert _refused(secure, Authorization=f"apikey {API_KEY}") == b"unauthorized\n"
    _open(secure, Authorization="apikey a-new-key").close()


def test_expiry_closes_with_3005_unless_refreshed() -> None:
    h = HubThread(hub_config(leeway=0))
    try:
        r = Raw(h.url)
        # a token a minute long (one of a second could expire before the hub reads it: exp is whole
        # seconds); the hub's clock then jumps past it, and the once-a-second tick finds it expired
        assert 0 < r.ok("connect", {"token": hs256("u", ttl=60)})["ttl"] <= 60
        h.loop.advance(61)  # expired, but within expired_close_delay (25 s): a refresh may be on its way
        for _ in range(2):  # two loop iterations: the timers due after the jump (the tick) have run
            h.call(lambda: None)
        assert h.call(lambda: len(h.hub.sessions)) == 1 and r.roundtrip()
        h.loop.advance(25)
        assert r.closed(timeout=10) == (DisconnectCode.TOKEN_EXPIRED, "connection expired")  # 3005
        r.close()
        r = Raw(h.url)
        r.ok("connect", {"token": hs256("u", ttl=60)})
        assert r.error("refresh", {"token": hs256("someone-else")}) == ErrorCode.UNAUTHORIZED
        assert r.error("refresh", {"token": hs256("u", ttl=-60)}) == ErrorCode.TOKEN_EXPIRED
        assert r.error("refresh", {"token": "junk"}) == ErrorCode.UNAUTHORIZED
        assert r.error("refresh", {}) == ErrorCode.BAD_REQUEST
        result = r.ok("refresh", {"token": hs256("u", ttl=7200)})
        assert result["expires"] is True and result["ttl"] > 7000 and result["client"]
        expires = h.call(lambda: next(iter(h.hub.sessions.values())).expires - h.loop.time())
        assert expires > 7000
        assert r.roundtrip()  # failed refreshes leave the connection open
        r.close()
    finally:
        h.stop()


def test_sighup_reload_revokes_keys_from_file_and_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsproto_lite.hub.config import load_config

    path = tmp_path / "hub.json"
    path.write_text(json.dumps({"port": 0, "auth": {"api_keys": ["file-key-1"]}}))
    monkeypatch.setenv("WSPROTO_HUB_API_KEYS", "env-key-1")
    h = HubThread(load_config(path))
    try:
        file_client = _open(h, Authorization="apikey file-key-1")
        env_client = _open(h, Authorization="apikey env-key-1")
        file_client.ok("connect")
        env_client.ok("connect")
        path.write_text(json.dumps({"port": 0, "auth": {"api_keys": ["file-key-2"]}}))
        assert h.call(h.hub_server.reload_api_keys) == 1  # the environment still lists env-key-1
        assert file_client.closed()[0] == DisconnectCode.INVALID_TOKEN
        assert env_client.roundtrip()
        _open(h, Authorization="apikey file-key-2").close()
        path.write_text("{broken")
        assert h.call(h.hub_server.reload_api_keys) == 0  # a broken file changes nothing
        _open(h, Authorization="apikey file-key-2").close()
    finally:
        h.stop()
