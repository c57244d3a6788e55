"""The README's hub snippet runs as written against a real hub."""

from __future__ import annotations

import re
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
