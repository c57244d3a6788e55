"""config.py: defaults, TOML and JSON files, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsproto_lite.hub.config import ConfigError, HubConfig, load_config
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES


def test_defaults_work_on_a_laptop() -> None:
    config = HubConfig()
    assert (config.host, config.port, config.compression) == ("127.0.0.1", 8000, False)
    assert (config.internal_port, config.internal_host, config.metrics_public) == (None, "127.0.0.1", False)
    assert config.namespaces.namespaces == DEFAULT_NAMESPACES


def test_toml(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        """
port = 9000
allowed_origins = ["http://127.0.0.1:9000"]
internal_port = 9001
internal_host = "10.0.0.5"
metrics_public = true
[limits]
queue_limit = 65536
connect_timeout = 3
[history]
max_bytes = 1000000
[default_namespace]
allow_publish = false
[namespaces.user]
presence = true
history_size = 5
history_ttl = 30
""",
        encoding="utf-8",
    )
    config = load_config(path)
    assert config.port == 9000 and config.allowed_origins == ["http://127.0.0.1:9000"]
    assert (config.internal_port, config.internal_host, config.metrics_public) == (9001, "10.0.0.5", True)
    assert config.limits.queue_limit == 65536 and config.limits.connect_timeout == 3.0
    assert config.max_history_bytes == 1_000_000
    names = config.namespaces.namespaces
    assert names["user"].presence and names["user"].history_size == 5
    assert not names[""].allow_publish and names["chat"] == DEFAULT_NAMESPACES["chat"]  # built-ins kept


def test_json(tmp_path: Path) -> None:
    path = tmp_path / "hub.json"
    path.write_text(json.dumps({"host": "", "namespaces": {"chat": {"presence": False}}}), encoding="utf-8")
    config = load_config(path)
    assert config.host == "" and not config.namespaces.namespaces["chat"].presence


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.toml", "port = 'x'", "port must be int"),
        ("a.toml", "prot = 1", "unknown key 'prot'"),
        ("a.toml", "[limits]\nqueue = 1", "unknown key 'queue'"),
        ("a.toml", "[namespaces.chat]\npresense = true", "namespaces.chat"),
        ("a.toml", "[namespaces.'a b']\npresence = true", "namespace name"),
        ("a.toml", "[history]\nmax = 1", "history.max"),
        ("a.toml", "port = 70000", "0-65535"),
        ("a.toml", "internal_port = -1", "internal_port must be in 0-65535"),
        ("a.toml", "metrics_public = 1", "metrics_public must be bool"),
        ("a.toml", "port = ", "a.toml"),
        ("a.json", "[1]", "top level"),
        ("a.json", "{", "a.json"),
        ("a.yaml", "port: 1", ".toml or .json"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "nope.toml")


def test_auth_rate_limits_and_tls_keys(tmp_path: Path) -> None:
    from wsproto_lite.hub.config import config_from_mapping

    from .authkit import RSA_KEY, public_pem

    key_file = tmp_path / "jwt.pub.pem"
    key_file.write_text(public_pem(RSA_KEY))
    config = config_from_mapping(
        {
            "certfile": "c.pem",
            "keyfile": "k.pem",
            "auth": {
                "jwt_public_key_file": str(key_file),
                "issuer": "i",
                "audience": "a",
                "leeway": 2,
                "allow_anonymous": True,
                "anonymous_namespaces": ["chat"],
                "private_namespaces": ["secret"],
                "api_keys": ["k1"],
            },
            "rate_limits": {"max_connections_per_user": 3},
        }
    )
    assert (config.certfile, config.keyfile) == ("c.pem", "k.pem")
    assert config.auth.jwt_public_key == public_pem(RSA_KEY) and config.auth.leeway == 2.0
    assert config.auth.anonymous_allowed and config.auth.private_namespaces == ("secret",)
    assert config.rate_limits.max_connections_per_user == 3
    for bad in (
        {"nope": 1},
        {"leeway": 1000},
        {"api_keys": "k1"},
        {"issuer": 5},
        {"allow_anonymous": "yes"},
        {"jwt_public_key_file": str(tmp_path / "missing.pem")},
    ):
        with pytest.raises(ConfigError, match="auth"):
            config_from_mapping({"auth": bad})
