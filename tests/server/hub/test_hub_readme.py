"""The README's hub snippet runs as written against a real hub."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from .conftest import HubThread

README = Path(__file__).resolve().parents[3] / "README.md"


def test_readme_hub_client_snippet(hub: HubThread, capsys: object) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next(b for b in blocks if "from wsproto_lite.hub.client import HubClient" in b)
    code = code.replace("ws://127.0.0.1:8000/", hub.url.rsplit("connection/websocket", 1)[0])
    printed: list[object] = []
    exec(compile(code, "README.md", "exec"), {"print": printed.append})
    assert printed == [{"text": "hello"}]


def test_readme_publish_helper_snippet() -> None:
    from wsproto_lite.hub.config import HubConfig

    from .authkit import auth_config

    h = HubThread(HubConfig(port=0, auth=auth_config(api_keys=("my-api-key",), jwt_secret=None)))
    try:
        blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
        code = next(b for b in blocks if "from wsproto_lite.hub.publisher import HubAPI" in b)
        code = code.replace("http://127.0.0.1:8000", f"http://127.0.0.1:{h.hub_server.port}")
        printed: list[object] = []
        exec(compile(code, "README.md", "exec"), {"print": printed.append})
        assert printed == [{"offset": 1, "epoch": printed[0]["epoch"]}]  # type: ignore[index]
    finally:
        h.stop()


def test_readme_production_config_loads(tmp_path: Path) -> None:
    from wsproto_lite.hub.config import config_from_mapping

    text = README.read_text()
    toml = text.split("cat > hub.toml <<'TOML'\n", 1)[1].split("TOML\n", 1)[0]
    import tomllib

    config = config_from_mapping(tomllib.loads(toml))
    assert config.certfile and config.auth.private_namespaces == ("secret",)
    assert config.rate_limits.max_connections_per_user == 20


def test_readme_start_up_report_is_what_the_production_config_prints() -> None:
    import tomllib

    from wsproto_lite.hub.app import HubServer
    from wsproto_lite.hub.config import config_from_mapping
    from wsproto_lite.hub.report import exposure
    from wsproto_lite.server.loop import EventLoop

    from .authkit import API_KEY, SECRET

    text = README.read_text()
    config = config_from_mapping(
        tomllib.loads(text.split("cat > hub.toml <<'TOML'\n", 1)[1].split("TOML\n")[0])
    )
    printed = text.split("At start the hub prints what it leaves open", 1)[1].split("```\n")[1].splitlines()
    # the environment's secret and key; no certificate here, and free ports
    config.auth = replace(config.auth, jwt_secret=SECRET, api_keys=(API_KEY,))
    config.certfile = config.keyfile = None
    config.host, config.port, config.internal_port = "127.0.0.1", 0, 0
    loop = EventLoop()
    server = HubServer(config, loop=loop)
    try:
        internal = f"127.0.0.1:{server.internal_port}"
        assert exposure(server) == [line.replace("127.0.0.1:9000", internal) for line in printed]
    finally:
        server.close()
        loop.close()
