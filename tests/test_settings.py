"""One declaration per setting: every layer's default of a limit or timer is the core's (or the keepalive
policy's), whatever the layer calls it (the table in wsproto_lite/server/README.md)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from wsproto_lite import DEFAULT_MAX_MESSAGE_SIZE, Config
from wsproto_lite.adapters import asyncio as asyncio_adapter
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.server import keepalive
from wsproto_lite.server.cli import _parser
from wsproto_lite.server.options import Options


def _default(function: Callable[..., Any], name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def _cli_default(option: str) -> Any:
    parser = _parser("wsproto-lite")
    arguments = parser.parse_args(["echo"])
    return getattr(arguments, option)


def test_the_message_limit_has_one_default() -> None:
    trio_adapter = pytest.importorskip("wsproto_lite.adapters.trio")
    uvicorn = pytest.importorskip("uvicorn")
    core = Config().max_message_size
    assert core == DEFAULT_MAX_MESSAGE_SIZE == 16 * 2**20
    assert {
        "Options.max_message_size": Options().max_message_size,
        "echo --max-message-size": _cli_default("max_message_size"),
        "asyncio serve(max_size)": _default(asyncio_adapter.serve, "max_size"),
        "asyncio connect(max_size)": _default(asyncio_adapter.connect, "max_size"),
        "trio max_message_size": trio_adapter.Settings().max_message_size,
        "uvicorn ws_max_size": uvicorn.Config(app=None).ws_max_size,
    } == dict.fromkeys(
        [
            "Options.max_message_size",
            "echo --max-message-size",
            "asyncio serve(max_size)",
            "asyncio connect(max_size)",
            "trio max_message_size",
            "uvicorn ws_max_size",
        ],
        core,
    )


def test_the_fragment_limit_has_one_default() -> None:
    assert Options().max_fragments == _cli_default("max_fragments") == Config().max_fragments


def test_the_keepalive_and_close_timers_have_one_default() -> None:
    trio_adapter = pytest.importorskip("wsproto_lite.adapters.trio")
    policy = (keepalive.PING_INTERVAL, keepalive.PING_TIMEOUT, keepalive.CLOSE_TIMEOUT)
    options = Options()
    trio_settings = trio_adapter.Settings()
    assert (options.ping_interval, options.ping_timeout, options.close_timeout) == policy
    for entry in (asyncio_adapter.serve, asyncio_adapter.connect):
        assert (
            tuple(_default(entry, name) for name in ("ping_interval", "ping_timeout", "close_timeout"))
            == policy
        )
    assert (
        trio_settings.ping_interval,
        trio_settings.ping_timeout,
        trio_settings.disconnect_timeout,
    ) == policy


def test_one_exception_family_for_the_io_layer_and_the_adapters() -> None:
    """One root (``server.errors.WebSocketError``): the asyncio adapter raises the I/O layer's classes
    under websockets' names, the trio adapter's trio-websocket-shaped ones derive from the same root."""
    from wsproto_lite.server import errors

    trio_adapter = pytest.importorskip("wsproto_lite.adapters.trio")
    assert asyncio_adapter.ConnectionClosed is errors.ConnectionClosed
    assert asyncio_adapter.ConnectionClosedOK is errors.ConnectionClosedOK
    assert asyncio_adapter.ConnectionClosedError is errors.ConnectionClosedError
    assert issubclass(asyncio_adapter.InvalidStatus, errors.HandshakeError)
    for error in (
        errors.ConnectionClosedError,
        errors.HandshakeError,
        errors.InvalidURL,
        trio_adapter.ConnectionClosed,
        trio_adapter.HandshakeError,
        trio_adapter.ConnectionRejected,
    ):
        assert issubclass(error, errors.WebSocketError), error
    assert issubclass(errors.InvalidURL, ValueError)  # what callers caught before


def test_the_hub_reads_no_frame_larger_than_its_largest_command() -> None:
    """The hub's frames are commands: its message limit follows ``limits.max_command_size`` (4 bytes of
    UTF-8 a character), not the I/O layer's 16 MiB, unless ``max_frame_bytes`` says otherwise."""
    config = HubConfig()
    assert config.frame_limit() == 4 * config.limits.max_command_size < DEFAULT_MAX_MESSAGE_SIZE
    assert HubConfig(max_frame_bytes=1 << 20).frame_limit() == 1 << 20
