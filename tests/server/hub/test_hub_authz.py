"""Channel authorization: grants, private and personal namespaces, anonymous namespaces; denials over the wire
for subscribe, publish, presence and history; a property: no command sequence reads an ungranted channel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsproto_lite.hub.auth import ANONYMOUS, AuthConfig, Authenticator, Identity
from wsproto_lite.hub.authz import Authorizer
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces
from wsproto_lite.hub.protocol import ErrorCode, HubError

from .authkit import API_KEY, NAMESPACES, SECRET, auth_config, caps, hs256, hub_config
from .conftest import HubThread, Raw
from .test_hub_auth import _open

NS = Namespaces(dict(NAMESPACES))


def _allowed(check: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        check(*args, **kwargs)
    except HubError as exc:
        assert exc.code == ErrorCode.PERMISSION_DENIED
        return False
    return True


def test_rules() -> None:
    authz = Authorizer(Authenticator(auth_config(anonymous_namespaces=("chat",), allow_anonymous=True)), NS)
    alice = Identity(user="alice", anonymous=False)
    granted = Identity(user="bob", subscribe=("secret:team*",), publish=("user:*",), anonymous=False)
    trusted = Identity(trusted=True, anonymous=False)
    read, publish = authz.check_read, authz.check_publish

    def ch(name: str) -> Any:
        return NS.resolve(name, pattern_ok=True)

    # personal channels: the user's own only, never a pattern, never anonymous
    assert _allowed(read, alice, ch("user:alice"))
    assert not _allowed(read, alice, ch("user:bob"))
    assert not _allowed(read, alice, ch("user:alice*"))
    assert not _allowed(read, ANONYMOUS, ch("user:x"))
    assert not _allowed(publish, alice, ch("user:alice"))  # only the server publishes there
    assert _allowed(publish, granted, ch("user:alice"))  # ... or an explicit grant
    # private namespaces: a grant covering the name, or a subscription token
    assert not _allowed(read, alice, ch("secret:team"))
    assert _allowed(read, granted, ch("secret:team"))
    assert _allowed(read, granted, ch("secret:team.a*"))
    assert not _allowed(read, granted, ch("secret:*"))  # wider than the grant
    assert not _allowed(read, granted, ch("secret:other"))
    token = hs256("alice", channel="secret:room")
    assert _allowed(read, alice, ch("secret:room"), subscription_token=token)
    assert not _allowed(read, alice, ch("secret:other"), subscription_token=token)  # another channel
    assert not _allowed(read, granted, ch("secret:room"), subscription_token=token)  # another user
    assert not _allowed(read, alice, ch("secret:room"), subscription_token=hs256("alice"))  # no channel claim
    assert not _allowed(read, alice, ch("secret:*"), subscription_token=token)
    assert _allowed(read, alice, ch("secret:room"), subscribed=True)
    # what allowed it: the subscription token's grant (the subscription lasts as long), or the identity
    grant = read(alice, ch("secret:room"), subscription_token=hs256("alice", 60, channel="secret:room"))
    assert grant is not None and grant.expires is not None and 0 < grant.expires - time.time() <= 60
    assert read(granted, ch("secret:team"), subscription_token=token) is None
    assert read(alice, ch("user:alice")) is None
    assert not _allowed(publish, alice, ch("secret:room"))
    # anonymous connections: only in anonymous_namespaces
    assert _allowed(read, ANONYMOUS, ch("chat:a")) and _allowed(publish, ANONYMOUS, ch("chat:a"))
    assert not _allowed(read, ANONYMOUS, ch("stock:a")) and not _allowed(publish, ANONYMOUS, ch("stock:a"))
    assert _allowed(read, alice, ch("stock:a"))
    # API-key clients: everything
    for name in ("user:alice", "secret:x", "secret:*", "stock:a"):
        assert _allowed(read, trusted, ch(name))
    assert _allowed(publish, trusted, ch("secret:x"))


def _policy(namespaces: dict[str, NamespaceOptions] | None = None, **auth: Any) -> Authorizer:
    return Authorizer(Authenticator(AuthConfig(**auth)), Namespaces(dict(namespaces or DEFAULT_NAMESPACES)))


def test_laptop_defaults_with_nothing_configured() -> None:
    authz = _policy()
    assert authz.anonymous_connections
    for name in ("chat:a", "stock:a", "bench:a", "lobby"):
        channel = Namespaces().resolve(name)
        assert _allowed(authz.check_read, ANONYMOUS, channel)
        assert _allowed(authz.check_publish, ANONYMOUS, channel)


@pytest.mark.parametrize(
    "auth", [{"jwt_secret": SECRET}, {"api_keys": (API_KEY,)}], ids=["jwt-key", "api-key-only"]
)
def test_safer_defaults_once_any_authentication_is_configured(auth: dict[str, Any]) -> None:
    user = Identity(user="u", anonymous=False)
    chat = Namespaces().resolve("chat:a")
    authz = _policy(**auth)
    assert not authz.anonymous_connections
    assert _allowed(authz.check_read, user, chat)
    assert not _allowed(authz.check_publish, user, chat)  # the built-ins: no client publishing
    assert not _allowed(authz.check_read, ANONYMOUS, chat)
    # a namespace turns them on
    room = NamespaceOptions(allow_publish=True)
    lobby = NamespaceOptions(allow_anonymous=True, allow_publish=True)
    authz = _policy({**DEFAULT_NAMESPACES, "room": room, "lobby": lobby}, **auth)
    names = authz.namespaces
    assert authz.anonymous_connections  # lobby takes anonymous connections ...
    assert _allowed(authz.check_publish, ANONYMOUS, names.resolve("lobby:x"))
    assert not _allowed(authz.check_read, ANONYMOUS, names.resolve("chat:x"))  # ... there only
    assert not _allowed(authz.check_read, ANONYMOUS, names.resolve("room:x"))
    assert _allowed(authz.check_publish, user, names.resolve("room:x"))
    assert not _allowed(authz.check_publish, user, names.resolve("chat:x"))
    # auth.allow_anonymous = true: anonymous connections everywhere a namespace does not say no
    authz = _policy({**DEFAULT_NAMESPACES, "closed": NamespaceOptions(allow_anonymous=False)}, **auth)
    assert not authz.anonymous_connections
    authz = _policy(
        {**DEFAULT_NAMESPACES, "closed": NamespaceOptions(allow_anonymous=False)},
        allow_anonymous=True,
        **auth,
    )
    assert authz.anonymous_connections
    assert _allowed(authz.check_read, ANONYMOUS, authz.namespaces.resolve("chat:x"))
    assert not _allowed(authz.check_publish, ANONYMOUS, authz.namespaces.resolve("chat:x"))
    assert not _allowed(authz.check_read, ANONYMOUS, authz.namespaces.resolve("closed:x"))


def test_safer_defaults_over_the_wire() -> None:
    h = HubThread(HubConfig(port=0, auth=AuthConfig(jwt_secret=SECRET)))  # the built-in namespaces
    try:
        anonymous = Raw(h.url)
        assert anonymous.error("connect") == ErrorCode.UNAUTHORIZED
        anonymous.close()
        user = Raw(h.url)
        user.ok("connect", {"token": hs256("u")})
        user.ok("subscribe", {"channel": "chat:a"})
        reply = user.cmd("publish", {"channel": "chat:a", "data": 1})
        assert reply["error"] == {"code": 103, "message": "permission denied"}
        granted = Raw(h.url)
        granted.ok("connect", {"token": hs256("g", caps=caps(publish=["chat:*"]))})  # a grant still publishes
        assert granted.ok("publish", {"channel": "chat:a", "data": 2})["offset"] == 1
        assert user.push()["pub"]["data"] == 2
        user.close()
        granted.close()
    finally:
        h.stop()
    h = HubThread(HubConfig(port=0))  # nothing configured: the laptop
    try:
        anonymous = Raw(h.url)
        assert anonymous.ok("connect")["client"]
        anonymous.ok("publish", {"channel": "chat:a", "data": 1})
        anonymous.close()
    finally:
        h.stop()


@pytest.fixture
def secure() -> Iterator[HubThread]:
    h = HubThread(hub_config())
    yield h
    h.stop()


def test_denials_over_the_wire(secure: HubThread) -> None:
    alice = Raw(secure.url)
    alice.ok("connect", {"token": hs256("alice", caps=caps(["secret:granted"]))})
    denied = ErrorCode.PERMISSION_DENIED
    for channel in ("user:bob", "secret:x", "secret:*"):
        assert alice.error("subscribe", {"channel": channel}) == denied
        if not channel.endswith("*"):
            assert alice.error("presence", {"channel": channel}) == denied
            assert alice.error("presence_stats", {"channel": channel}) == denied
            assert alice.error("history", {"channel": channel}) == denied
            assert alice.error("publish", {"channel": channel, "data": 1}) == denied
    alice.ok("subscribe", {"channel": "user:alice"})
    alice.ok("subscribe", {"channel": "secret:granted"})
    alice.ok("history", {"channel": "secret:granted"})
    token = hs256("alice", channel="secret:room")
    assert (
        alice.error("subscribe", {"channel": "secret:room", "token": hs256("eve", channel="secret:room")})
        == denied
    )
    alice.ok("subscribe", {"channel": "secret:room", "token": token})
    alice.ok("presence", {"channel": "secret:room"})  # subscribed with its token: presence and history
    alice.ok("history", {"channel": "secret:room"})
    # the messages say nothing about the policy (which namespace exists, which rule refused)
    for method, params, message in (
        ("subscribe", {"channel": "secret:x"}, "permission denied"),
        ("subscribe", {"channel": "user:bob"}, "permission denied"),
        ("subscribe", {"channel": "chat:*"}, "permission denied"),
        ("publish", {"channel": "user:alice", "data": 1}, "permission denied"),
        ("history", {"channel": "secret:y"}, "permission denied"),
        ("subscribe", {"channel": "nope:x"}, "unknown channel"),
        ("publish", {"channel": "nope:x", "data": 1}, "unknown channel"),
    ):
        assert alice.cmd(method, params)["error"]["message"] == message, (method, params)
    alice.close()


# -- the property ------------------------------------------------------------------------------------------

FORBIDDEN = ("secret:x", "user:alice")
"""What mallory (user "m", granted ``chat:*``, a subscription token for ``secret:y``) must never read."""
CHANNELS = (
    "secret:x",
    "secret:y",
    "secret:*",
    "secret:x*",
    "user:alice",
    "user:*",
    "user:m",
    "chat:a",
    "chat:*",
)
TOKENS = (
    "",
    hs256("m", channel="secret:y"),
    hs256("m", channel="secret:x*"),
    hs256("alice", channel="secret:x"),
    hs256("m", channel="secret:x", secret="another-secret-of-at-least-32-bytes"),
    hs256("m", channel="secret:x", ttl=-60),
)
REFRESH = (hs256("m", caps=caps(["chat:*"])), hs256("alice", caps=caps(["secret:*"])), "junk")

_command = st.one_of(
    st.tuples(st.just("subscribe"), st.sampled_from(CHANNELS), st.sampled_from(TOKENS)),
    st.tuples(
        st.sampled_from(["unsubscribe", "presence", "presence_stats", "history"]), st.sampled_from(CHANNELS)
    ),
    st.tuples(st.just("publish"), st.sampled_from(CHANNELS)),
    st.tuples(st.just("refresh"), st.sampled_from(REFRESH)),
)


def _params(command: tuple[str, ...]) -> dict[str, Any]:
    method = command[0]
    if method == "refresh":
        return {"token": command[1]}
    params: dict[str, Any] = {"channel": command[1]}
    if method == "subscribe" and command[2]:
        params["token"] = command[2]
    if method == "publish":
        params["data"] = "from mallory"
    return params


def _leaks(frame: dict[str, Any]) -> bool:
    """Whether a frame carries anything from a forbidden channel."""
    if frame.get("channel") in FORBIDDEN:
        return True
    result = frame.get("result")
    if isinstance(result, dict):
        return any(p.get("channel") in FORBIDDEN for p in result.get("publications", ()))
    return False


def test_no_command_sequence_reads_an_ungranted_channel() -> None:
    h = HubThread(hub_config())
    server = _open(h, Authorization=f"apikey {API_KEY}")
    server.ok("connect")
    try:

        def publish_everywhere(n: int) -> None:
            for channel in ("secret:x", "secret:y", "user:alice", "user:m", "chat:a"):
                server.ok("publish", {"channel": channel, "data": n})

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(_command, max_size=12))
        def run(commands: list[tuple[str, ...]]) -> None:
            mallory = Raw(h.url)
            try:
                mallory.ok("connect", {"token": hs256("m", caps=caps(["chat:*"]))})
                frames: list[dict[str, Any]] = []
                for command in commands:
                    publish_everywhere(1)
                    frames.append(mallory.cmd(command[0], _params(command)))
                publish_everywhere(2)
                frames.append(mallory.cmd("ping"))  # after every push the publications above queued
                frames.extend(mallory.pushes)
                leaks = [f for f in frames if _leaks(f)]
                assert not leaks, leaks
            finally:
                mallory.close()

        run()
    finally:
        server.close()
        h.stop()


# -- subscriptions end with their permission ----------------------------------------------------------------


def _presence_users(h: HubThread, channel: str) -> list[str]:
    return sorted(info.user for info in h.call(lambda: h.hub.engine.presence(channel).result()))


def _publish(h: HubThread, channel: str, data: Any) -> None:
    h.call(h.hub.publish, channel, data)  # the in-memory engine queues the pushes before it returns


def _pubs(r: Raw, channel: str) -> list[Any]:
    """The data of the ``pub`` pushes of ``channel`` received so far (a ping first: every push queued
    before it has arrived)."""
    assert r.roundtrip()
    return [p["pub"]["data"] for p in r.pushes if "pub" in p and p["channel"] == channel]


def test_a_subscription_ends_when_its_subscription_token_expires() -> None:
    h = HubThread(hub_config(leeway=0))
    try:
        alice, bob = Raw(h.url), Raw(h.url)
        alice.ok("connect", {"token": hs256("alice")})
        bob.ok("connect", {"token": hs256("bob")})
        result = alice.ok(
            "subscribe", {"channel": "secret:room", "token": hs256("alice", 2, channel="secret:room")}
        )
        assert result["expires"] is True and 0 <= result["ttl"] <= 2
        long = bob.ok("subscribe", {"channel": "secret:room", "token": hs256("bob", channel="secret:room")})
        assert long["expires"] is True and long["ttl"] > 3500
        assert _presence_users(h, "secret:room") == ["alice", "bob"]
        _publish(h, "secret:room", "before")
        assert _pubs(alice, "secret:room") == ["before"]
        h.loop.advance(2 + 25)  # past its expiry and the expired_sub_close_delay
        push = alice.push(timeout=10)  # the once-a-second tick finds the token expired
        while "unsubscribe" not in push:
            push = alice.push(timeout=10)
        assert push == {
            "channel": "secret:room",
            "unsubscribe": {"code": 2501, "reason": "subscription expired"},
        }
        alice.pushes.clear()
        _publish(h, "secret:room", "after")
        assert _pubs(alice, "secret:room") == []  # publications stop
        assert _pubs(bob, "secret:room") == ["before", "after"]  # bob's token has not expired
        assert _presence_users(h, "secret:room") == ["bob"]
        assert alice.error("history", {"channel": "secret:room"}) == ErrorCode.PERMISSION_DENIED
        # the client's way on: subscribe again with a fresh token, recovering what it missed
        again = alice.ok(
            "subscribe",
            {
                "channel": "secret:room",
                "token": hs256("alice", channel="secret:room"),
                "recover": True,
                "epoch": result["epoch"],
                "offset": 1,
            },
        )
        assert again["recovered"] is True and [p["data"] for p in again["publications"]] == ["after"]
        alice.close()
        bob.close()
    finally:
        h.stop()


def test_a_refresh_that_no_longer_grants_a_channel_ends_its_subscription(secure: HubThread) -> None:
    h = secure
    alice = Raw(h.url)
    alice.ok("connect", {"token": hs256("alice", caps=caps(["secret:granted"]))})
    for channel in ("secret:granted", "chat:open"):
        alice.ok("subscribe", {"channel": channel})
    alice.ok("subscribe", {"channel": "secret:room", "token": hs256("alice", channel="secret:room")})
    alice.ok(
        "refresh", {"token": hs256("alice", caps=caps(["secret:granted"]))}
    )  # still granted: nothing ends
    _publish(h, "secret:granted", 1)
    assert _pubs(alice, "secret:granted") == [1]
    alice.ok("refresh", {"token": hs256("alice")})  # the grant is gone
    unsubscribes = [p for p in alice.pushes if "unsubscribe" in p]
    assert unsubscribes == [
        {"channel": "secret:granted", "unsubscribe": {"code": 2001, "reason": "permission revoked"}}
    ]
    alice.pushes.clear()
    for channel in ("secret:granted", "chat:open", "secret:room"):
        _publish(h, channel, 2)
    assert _pubs(alice, "secret:granted") == []  # publications stop
    assert _pubs(alice, "chat:open") == [2] and _pubs(alice, "secret:room") == [2]  # the others live on
    assert _presence_users(h, "secret:granted") == []
    assert _presence_users(h, "secret:room") == ["alice"]
    assert alice.error("subscribe", {"channel": "secret:granted"}) == ErrorCode.PERMISSION_DENIED
    alice.close()


def test_a_subscription_s_expiry_is_freed_with_it_without_gc(secure: HubThread) -> None:
    import gc
    import weakref

    h = secure
    r = Raw(h.url)
    r.ok("connect", {"token": hs256("alice")})
    token = hs256("alice", channel="secret:room")

    def subscription() -> weakref.ref[Any]:
        (session,) = h.hub.sessions.values()
        (sub,) = session.subscriptions.values()
        assert h.hub._expiring.keys() == {sub}
        return weakref.ref(sub)

    gc.disable()
    try:
        r.ok("subscribe", {"channel": "secret:room", "token": token})
        weak = h.call(subscription)
        r.ok("unsubscribe", {"channel": "secret:room"})  # by the client
        assert h.call(lambda: (weak() is None, h.hub._expiring)) == (True, {})
        r.ok("subscribe", {"channel": "secret:room", "token": token})
        weak = h.call(subscription)
        assert h.call(h.hub.expire_subscriptions, h.loop.time() + 7200) == 1  # by its expiry
        assert r.push()["unsubscribe"]["code"] == 2501
        assert h.call(lambda: (weak() is None, h.hub._expiring)) == (True, {})
        r.ok("subscribe", {"channel": "secret:room", "token": token})
        weak = h.call(subscription)
        r.close()  # by the close
        assert h.wait_sessions(0)
        assert h.call(lambda: (weak() is None, h.hub._expiring)) == (True, {})
    finally:
        gc.enable()
