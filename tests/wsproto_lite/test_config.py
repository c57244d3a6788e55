"""Configuration defaults and validation."""

from __future__ import annotations

import pytest

from wsproto_lite import Config


def test_defaults_are_bounded() -> None:
    config = Config()
    assert config.max_message_size == 16 * 2**20 and config.frame_limit == config.max_message_size
    assert Config(max_frame_size=10).frame_limit == 10
    # Autobahn 9.3.1/9.4.1: 4 MiB in 64-byte fragments must fit
    assert config.max_fragments is not None and config.max_fragments >= 4 * 2**20 // 64


@pytest.mark.parametrize("name", ["max_message_size", "max_frame_size", "max_fragments"])
def test_negative_limits_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        Config(**{name: -1})
