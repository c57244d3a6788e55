"""namespaces.py: channel names, namespace options, wildcards."""

from __future__ import annotations

import pytest

from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces, namespace_of
from wsproto_lite.hub.protocol import ErrorCode, HubError


def test_the_contracts_defaults() -> None:
    chat, stock, bench, default = (DEFAULT_NAMESPACES[n] for n in ("chat", "stock", "bench", ""))
    assert chat.presence and chat.join_leave and (chat.history_size, chat.history_ttl) == (100, 300)
    assert not chat.allow_wildcards
    assert (stock.history_size, stock.history_ttl) == (10, 60) and stock.allow_wildcards
    assert not bench.presence and not bench.history and not default.history
    # clients publish, and anonymous connections come in, while no authentication is configured (authz.py)
    for options in (chat, stock, bench, default):
        assert options.allow_publish is None and options.allow_anonymous is None


def test_resolve() -> None:
    names = Namespaces()
    assert names.resolve("lobby").namespace == ""
    channel = names.resolve("chat:room:1")
    assert (channel.namespace, channel.options, channel.is_pattern) == (
        "chat",
        DEFAULT_NAMESPACES["chat"],
        False,
    )
    pattern = names.resolve("stock:US.*", pattern_ok=True)
    assert pattern.is_pattern and pattern.prefix == "stock:US."
    assert names.resolve("stock:*", pattern_ok=True).prefix == "stock:"
    assert namespace_of("stock:X") == "stock" and namespace_of("x") == ""


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("user:42", ErrorCode.UNKNOWN_CHANNEL),
        ("chat:*", ErrorCode.PERMISSION_DENIED),
        ("*", ErrorCode.BAD_REQUEST),
        ("stock:a*b", ErrorCode.BAD_REQUEST),
        ("chat:a b", ErrorCode.BAD_REQUEST),
        ('chat:"', ErrorCode.BAD_REQUEST),
        ("chat:é", ErrorCode.BAD_REQUEST),
        ("chat:", ErrorCode.BAD_REQUEST),
        ("c" * 256, ErrorCode.BAD_REQUEST),
    ],
)
def test_refused_names(name: str, code: int) -> None:
    with pytest.raises(HubError) as info:
        Namespaces().resolve(name, pattern_ok=True)
    assert info.value.code == code
    # generic messages: nothing about which namespaces exist or what they allow
    assert "user" not in info.value.message and "chat" not in info.value.message


def test_unknown_namespaces_and_refused_wildcards_say_nothing_specific() -> None:
    for name, code, message in (
        ("nope:x", ErrorCode.UNKNOWN_CHANNEL, "unknown channel"),
        ("chat:*", ErrorCode.PERMISSION_DENIED, "permission denied"),
    ):
        with pytest.raises(HubError) as info:
            Namespaces().resolve(name, pattern_ok=True)
        assert (info.value.code, info.value.message) == (code, message)


def test_wildcards_only_where_asked() -> None:
    with pytest.raises(HubError) as info:
        Namespaces().resolve("stock:*")
    assert info.value.code == ErrorCode.BAD_REQUEST


def test_options_from_a_config_table() -> None:
    options = NamespaceOptions.from_mapping({"presence": True, "history_size": 5, "history_ttl": 30})
    assert options.presence and options.history and options.history_ttl == 30.0
    assert (
        options.allow_publish is False and options.allow_anonymous is None
    )  # a file's namespace: no publish
    options = NamespaceOptions.from_mapping({"allow_publish": True, "allow_anonymous": False})
    assert options.allow_publish is True and options.allow_anonymous is False
    for bad in (
        {"presense": True},
        {"presence": 1},
        {"allow_anonymous": 1},
        {"allow_publish": None},
        {"history_size": "5"},
        {"history_size": 5},
        {"join_leave": True},
    ):
        with pytest.raises(ValueError):
            NamespaceOptions.from_mapping(bad)
    with pytest.raises(ValueError):
        Namespaces({"bad name": NamespaceOptions()})
