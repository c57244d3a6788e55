"""``cent`` (PyPI, Centrifugo's HTTP API client) against the hub's ``/api/<method>``: every result parsed
(not None, as Centrifugo v6 wraps results in ``{"result": …}``), API errors as ``CentApiResponseError``.

cent is a synchronous requests-based client with a timeout: it runs in the test process, no driver."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from ..authkit import SECRET
from ..conftest import HubThread
from .conftest import API_KEY, Drivers, api_url, needs, sdk_marks

pytestmark = sdk_marks("http_api")

cent = pytest.importorskip("cent", reason="pip install -r tests/server/hub/sdk/requirements.txt")


@pytest.fixture
def api(sdk_hub: HubThread) -> Any:
    client = cent.Client(api_url(sdk_hub), API_KEY, timeout=5)
    yield client
    client.close()


def test_publish_and_history(api: Any) -> None:
    first = api.publish(cent.PublishRequest(channel="chat:api", data={"n": 1}))
    assert first is not None and first.offset == 1 and first.epoch
    second = api.publish(cent.PublishRequest(channel="chat:api", data={"n": 2}))
    assert second.offset == 2 and second.epoch == first.epoch
    position = api.history(cent.HistoryRequest(channel="chat:api"))
    assert position is not None and position.offset == 2 and position.epoch == first.epoch
    assert not position.publications  # no limit: the position only
    history = api.history(cent.HistoryRequest(channel="chat:api", limit=-1))
    assert [p.data for p in history.publications] == [{"n": 1}, {"n": 2}]
    assert [p.offset for p in history.publications] == [1, 2]


def test_history_remove(api: Any) -> None:
    api.publish(cent.PublishRequest(channel="chat:gone", data={"n": 1}))
    assert api.history_remove(cent.HistoryRemoveRequest(channel="chat:gone")) is not None
    history = api.history(cent.HistoryRequest(channel="chat:gone", limit=-1))
    assert not history.publications and history.offset == 1


def test_broadcast_has_one_response_per_channel(api: Any) -> None:
    result = api.broadcast(cent.BroadcastRequest(channels=["chat:b1", "nope:b2"], data={"x": 1}))
    assert result is not None and len(result.responses) == 2
    ok, failed = result.responses
    assert ok.error is None and ok.result is not None and ok.result.offset == 1
    assert failed.error is not None and failed.error.code == 102


@needs("client_protocol")  # a centrifuge-python client is in the presence
def test_presence_presence_stats_channels_and_info(api: Any, sdk_hub: HubThread, drivers: Drivers) -> None:
    now = int(time.time())
    user_token = jwt.encode({"sub": "alice", "exp": now + 3600}, SECRET, algorithm="HS256")
    c = drivers("python", sdk_hub.url, token=user_token)
    client_id = c.connected()["client"]
    c.subscribed("chat:seen")
    presence = api.presence(cent.PresenceRequest(channel="chat:seen"))
    assert presence is not None and set(presence.presence) == {client_id}
    assert presence.presence[client_id].user == "alice"
    stats = api.presence_stats(cent.PresenceStatsRequest(channel="chat:seen"))
    assert stats is not None and (stats.num_clients, stats.num_users) == (1, 1)
    channels = api.channels(cent.ChannelsRequest(pattern="chat:*"))
    assert channels is not None and channels.channels["chat:seen"].num_clients == 1
    info = api.info(cent.InfoRequest())
    assert info is not None and len(info.nodes) == 1
    assert info.nodes[0].num_clients == 1 and info.nodes[0].num_channels >= 1


def test_disconnect_subscribe_and_unsubscribe_return_results(api: Any) -> None:
    assert api.subscribe(cent.SubscribeRequest(user="nobody", channel="chat:x")) is not None
    assert api.unsubscribe(cent.UnsubscribeRequest(user="nobody", channel="chat:x")) is not None
    assert api.disconnect(cent.DisconnectRequest(user="nobody")) is not None


def test_api_errors(api: Any, sdk_hub: HubThread) -> None:
    with pytest.raises(cent.CentApiResponseError) as unknown:
        api.publish(cent.PublishRequest(channel="nope:x", data={}))
    assert unknown.value.code == 102
    with pytest.raises(cent.CentApiResponseError) as bad:
        api.history(cent.HistoryRequest(channel="chat:x", since=cent.StreamPosition(offset=5, epoch="bogus")))
    assert bad.value.code in (107, 112)
    wrong_key = cent.Client(api_url(sdk_hub), "not-the-key", timeout=5)
    with pytest.raises((cent.CentUnauthorizedError, cent.CentTransportError)):
        wrong_key.publish(cent.PublishRequest(channel="chat:x", data={}))
    wrong_key.close()
