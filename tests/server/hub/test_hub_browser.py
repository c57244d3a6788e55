"""The chat page in a real browser (Debian's chromium driven by Playwright): two pages exchange messages,
presence updates, and a page that was away while the hub restarted reconnects and shows what it missed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from server.hub.client import HubClient

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


def test_two_pages_chat_presence_and_recovery_after_a_restart(browser: Any, hub: Any) -> None:
    base = f"{hub.base}?room=chat:browser"
    expect = sync_api.expect
    alice = browser.new_page()
    bob = browser.new_page()
    alice.goto(base + "&name=alice&backoff=100")
    expect(alice.locator("#status")).to_have_text("connected as alice in chat:browser")
    # bob comes back slowly after a restart (3-6 s): the test publishes while he is away
    bob.goto(base + "&name=bob&backoff=3000")
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

    # the hub restarts; alice is back within a fraction of a second, bob only after 3+ s
    hub.restart()
    expect(alice.locator("#status")).to_have_text("connected as alice in chat:browser", timeout=10_000)
    assert "reconnecting" in (bob.text_content("#status") or "")
    with HubClient(hub.url, name="carol", reconnect=False) as carol:
        carol.publish("chat:browser", {"name": "carol", "text": "you missed this"})
    expect(alice.locator("#log")).to_contain_text("carol:you missed this")  # live for alice
    # bob: reconnected, told the history was lost with the restart, shown what he missed since
    expect(bob.locator("#status")).to_have_text("connected as bob in chat:browser", timeout=15_000)
    expect(bob.locator("#log li.notice")).to_contain_text("lost the room's history")
    missed = bob.locator("#log li.missed")
    expect(missed).to_have_count(1)
    expect(missed).to_contain_text("carol:you missed this")
    expect(missed).to_contain_text("(missed while away)")
    # presence after the restart: both again, and bob left when his page closed
    expect(alice.locator("#count")).to_have_text("2")
    if os.environ.get("HUB_SCREENSHOT"):
        bob.screenshot(path=os.environ["HUB_SCREENSHOT"] + "-bob.png")
    bob.close()
    expect(alice.locator("#count")).to_have_text("1")
    alice.close()
