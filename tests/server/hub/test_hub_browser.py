"""The chat page in a real browser (Debian's chromium driven by Playwright): two pages exchange messages,
presence updates, and a page that was away while the hub restarted reconnects and shows what it missed;
with a token in a cookie, the page of another origin is refused at the upgrade (403) while the hub's works.

Each page runs on a paused Playwright clock: its timers (the reconnection backoff) fire only when the test
moves that page's clock, so "bob is still away" is a state the test holds, not a race with the wall clock.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest

from wsproto_lite.hub.client import HubClient

from .authkit import hs256, hub_config
from .conftest import HubThread

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
if not shutil.which(CHROMIUM):
    pytest.skip(
        f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)", allow_module_level=True
    )


@pytest.fixture(params=["standalone", "fastapi-mounted"])
def hub(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The hub on its own server, and HubASGI (with its chat page) mounted at /hub in a FastAPI app."""
    if request.param == "standalone":
        h: Any = HubThread()
    else:
        pytest.importorskip("fastapi")
        from .asgi_util import AsgiHubThread

        h = AsgiHubThread(mount="/hub", http=True)
    yield h
    h.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


START = datetime(2026, 1, 1, tzinfo=UTC)
BACKOFF_MS = 100
"""The pages' first reconnection delay (the page waits 1-2 times it): how far the test moves a clock."""


def paused_page(browser: Any) -> Any:
    """A page (its own browser context) whose clock stands still: setTimeout and setInterval callbacks run
    only inside ``page.clock.run_for(ms)``; WebSocket events and Playwright's own waiting are unaffected."""
    page = browser.new_page()
    page.clock.install(time=START)
    page.clock.pause_at(START + timedelta(hours=1))  # a time ahead of the running fake clock: paused there
    return page


def test_two_pages_chat_presence_and_recovery_after_a_restart(browser: Any, hub: Any) -> None:
    base = f"{hub.base}?room=chat:browser&backoff={BACKOFF_MS}"
    expect = sync_api.expect
    alice = paused_page(browser)
    bob = paused_page(browser)
    alice.goto(base + "&name=alice")
    expect(alice.locator("#status")).to_have_text("connected as alice in chat:browser")
    bob.goto(base + "&name=bob")
    expect(bob.locator("#status")).to_have_text("connected as bob in chat:browser")

    # presence: each sees both
    expect(alice.locator("#presence li")).to_have_count(2)
    expect(alice.locator("#presence")).to_contain_text("bob")
    expect(bob.locator("#presence")).to_contain_text("alice")
    expect(bob.locator("#count")).to_have_text("2")

    # a message each way
    alice.fill("#text", "hello bob")
    alice.press("#text", "Enter")
    expect(bob.locator("#log")).to_contain_text("alice:hello bob")
    bob.fill("#text", "hi alice")
    bob.click("form#send button")
    expect(alice.locator("#log")).to_contain_text("bob:hi alice")
    if os.environ.get("HUB_SCREENSHOT"):  # for a person to look at; never committed
        alice.screenshot(path=os.environ["HUB_SCREENSHOT"] + "-alice.png")

    # the hub restarts: both pages see it go and wait on their backoff timer, whose clock stands still
    hub.restart()
    for page in (alice, bob):
        expect(page.locator("#status")).to_contain_text("reconnecting in", timeout=10_000)
    # alice's timer runs (the new hub listens by now); bob's clock does not move: he stays away
    alice.clock.run_for(2 * BACKOFF_MS)
    expect(alice.locator("#status")).to_have_text("connected as alice in chat:browser", timeout=10_000)
    with HubClient(hub.url, name="carol", reconnect=False) as carol:
        carol.publish("chat:browser", {"name": "carol", "text": "you missed this"})
    expect(alice.locator("#log")).to_contain_text("carol:you missed this")  # live for alice
    expect(bob.locator("#status")).to_contain_text("reconnecting in")
    expect(bob.locator("#log")).not_to_contain_text("carol:you missed this")
    # bob's timer runs: reconnected, told the history was lost with the restart, shown what he missed since
    bob.clock.run_for(2 * BACKOFF_MS)
    expect(bob.locator("#status")).to_have_text("connected as bob in chat:browser", timeout=10_000)
    expect(bob.locator("#log li.notice")).to_contain_text("lost the room's history")
    missed = bob.locator("#log li.missed")
    expect(missed).to_have_count(1)
    expect(missed).to_contain_text("carol:you missed this")
    expect(missed).to_contain_text("(missed while away)")
    # presence after the restart: both again, and bob left when his page closed
    expect(alice.locator("#count")).to_have_text("2")
    if os.environ.get("HUB_SCREENSHOT"):
        bob.screenshot(path=os.environ["HUB_SCREENSHOT"] + "-bob.png")
    bob.context.close()
    expect(alice.locator("#count")).to_have_text("1")
    alice.context.close()


class _OtherSite:
    """Another origin (same host, another port) serving the hub's chat page, pointed at the hub."""

    def __init__(self, hub_host: str) -> None:
        static = resources.files("wsproto_lite.hub").joinpath("static")
        script = static.joinpath("app.js").read_text()
        own = 'new URL("connection/websocket", location.href)'
        pointed = script.replace(own, f'new URL("connection/websocket", "http://{hub_host}/")')
        assert pointed != script  # the page still builds its WebSocket URL relative to itself
        files = {
            "/": ("text/html", static.joinpath("index.html").read_bytes()),
            "/app.js": (
                "text/javascript",
                pointed.encode(),
            ),
        }

        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                content_type, body = files.get(self.path.partition("?")[0], ("text/plain", b""))
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.thread = threading.Thread(target=self.server.serve_forever, name="other-site", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def test_a_page_of_another_origin_is_refused_when_cookies_carry_tokens(browser: Any) -> None:
    h = HubThread(hub_config())  # a JWT key: a token may come from a cookie
    other = _OtherSite(f"127.0.0.1:{h.hub_server.port}")
    context = browser.new_context()
    try:
        # the visitor's session: a token cookie for 127.0.0.1, which the browser sends to every port
        context.add_cookies(
            [{"name": "token", "value": hs256("visitor"), "url": f"http://127.0.0.1:{h.hub_server.port}"}]
        )
        expect = sync_api.expect
        own = context.new_page()
        own.goto(f"http://127.0.0.1:{h.hub_server.port}/?room=chat:mine&name=visitor")
        expect(own.locator("#status")).to_have_text("connected as visitor in chat:mine")

        evil = context.new_page()
        with evil.expect_console_message(lambda m: "403" in m.text, timeout=10_000) as refused:
            evil.goto(other.url + "?room=chat:mine&name=mallory&backoff=60000")
        assert "Unexpected response code: 403" in refused.value.text
        expect(evil.locator("#status")).to_contain_text("reconnecting")
        assert h.call(lambda: sorted(s.identity.user for s in h.hub.sessions.values())) == ["visitor"]
    finally:
        context.close()
        other.close()
        h.stop()
