"""The chat page in a real browser (Debian's chromium driven by Playwright): two pages exchange messages,
presence updates, and a page that was away while the hub restarted reconnects and shows what it missed.

Each page runs on a paused Playwright clock: its timers (the reconnection backoff) fire only when the test
moves that page's clock, so "bob is still away" is a state the test holds, not a race with the wall clock.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wsproto_lite.hub.client import HubClient

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


def test_two_pages_chat_presence_and_recovery_after_a_restart(browser: Any, hub: HubThread) -> None:
    base = f"http://127.0.0.1:{hub.hub_server.port}/?room=chat:browser&backoff={BACKOFF_MS}"
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
