"""Events are immutable records with a few conveniences."""

from __future__ import annotations

import dataclasses

import pytest

from wsproto_lite import ConnectionClosed, HTTPRequest, Request, TextMessage


def test_events_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TextMessage("a").data = "b"  # type: ignore[misc]
    assert ConnectionClosed(1000) == ConnectionClosed(1000, "", False)


def test_request_helpers() -> None:
    request = Request(
        "GET", "/a/b?x=1&y=2", (("Host", "h"), ("Cookie", "s=abc"), ("Cookie", "bad cookie;;; ="))
    )
    assert (request.path, request.query, request.host, request.origin) == ("/a/b", "x=1&y=2", "h", None)
    assert request.cookies == {"s": "abc"}
    assert isinstance(request, HTTPRequest)
