"""centrifuge-js's browser build (``node_modules/centrifuge/dist/centrifuge.js``) in Chromium through
Playwright, from a page this test serves on 127.0.0.1, against the hub: connect, subscribe, publish,
presence_stats, history, and recovery after the hub drops the browser's TCP connection."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ..conftest import HubThread
from .conftest import NODE_MODULES, require_node, sdk_hub_config, sdk_marks

pytestmark = sdk_marks()

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

sync_api = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

PAGE = """<!doctype html>
<html><head><title>centrifuge-js in a browser</title><script src="centrifuge.js"></script></head>
<body><script>
const params = new URLSearchParams(location.search);
window.observed = [];
const note = (value) => window.observed.push(value);
const client = new Centrifuge(params.get('hub'),
  { timeout: 4000, minReconnectDelay: 100, maxReconnectDelay: 1000 });
client.on('connected', (ctx) => note({ ev: 'connected', client: ctx.client }));
client.on('disconnected', (ctx) => note({ ev: 'disconnected', code: ctx.code }));
client.on('connecting', (ctx) => note({ ev: 'connecting', code: ctx.code, reason: ctx.reason }));
client.on('error',
  (ctx) => note({ ev: 'error', type: ctx.type, message: String(ctx.error && ctx.error.message) }));
const sub = client.newSubscription('chat:browser', { recoverable: true });
sub.on('subscribed',
  (ctx) => note({ ev: 'subscribed', was_recovering: ctx.wasRecovering, recovered: ctx.recovered }));
sub.on('publication', (ctx) => note({ ev: 'publication', data: ctx.data, offset: ctx.offset }));
window.sub = sub;
window.client = client;
sub.subscribe();
client.connect();
</script></body></html>
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[str]:
    """The page and the SDK's browser build, from a folder of their own on 127.0.0.1."""
    require_node()
    (tmp_path / "index.html").write_text(PAGE)
    shutil.copy(NODE_MODULES / "centrifuge" / "dist" / "centrifuge.js", tmp_path / "centrifuge.js")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_centrifuge_js_in_chromium(browser: Any, page_server: str) -> None:
    config = sdk_hub_config()
    config.allowed_origins = [page_server]
    hub = HubThread(config)
    try:
        page = browser.new_page()
        page.goto(f"{page_server}/?hub={hub.url}")

        def wait_for(js_predicate: str) -> None:
            try:
                page.wait_for_function(f"window.observed.some(e => {js_predicate})", timeout=6000)
            except sync_api.TimeoutError:
                pytest.fail(f"no {js_predicate} within 6 s; seen {page.evaluate('window.observed')}")

        wait_for("e.ev === 'subscribed' && e.was_recovering === false")
        page.evaluate("window.sub.publish({text: 'from the page'})")
        wait_for("e.ev === 'publication' && e.data.text === 'from the page' && e.offset === 1")
        stats = page.evaluate("window.client.presenceStats('chat:browser')")
        assert stats == {"numClients": 1, "numUsers": 1} or stats["numClients"] == 1, stats
        history = page.evaluate("window.sub.history({limit: -1})")
        assert [p["data"] for p in history["publications"]] == [{"text": "from the page"}]

        def drop_then_publish() -> None:  # one loop callback: the page cannot resubscribe in between
            for conn in list(hub.hub.sessions):
                conn.abort()
            hub.hub.publish("chat:browser", {"text": "missed"})

        hub.call(drop_then_publish)
        wait_for("e.ev === 'subscribed' && e.was_recovering === true && e.recovered === true")
        wait_for("e.ev === 'publication' && e.data.text === 'missed' && e.offset === 2")
        assert page.evaluate("window.observed.filter(e => e.ev === 'connected').length") == 2
        page.close()
    finally:
        hub.stop()
