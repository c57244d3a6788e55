"""The protobuf codec choice: the hand-written ``wsproto_lite.hub.pb_wire`` against the ``protobuf`` package.

``python -m benchmarks.pb_codec [--reps N]`` prints a Markdown table (RESULTS-protobuf.md holds a run).
The package's message classes are built at run time from the same vendored ``client.proto`` (its
messages as ``pb_schema`` reads them, turned into a ``FileDescriptorProto``): nothing generated is kept.
Both sides produce what the hub needs, so the comparison is like for like:

- *decode*: a frame of 20 varint-delimited ``Command``s (``publish``, 64-byte JSON ``data``) -> for each
  command its id, method and parameters as a dict, ``data`` parsed as JSON (the package: ``FromString``
  then ``ListFields``);
- *encode*: one publication push (``Reply{push{channel, pub{data, info, offset}}}``) -> bytes, what
  fan-out builds once per channel (the package: build the message, ``SerializeToString``); and what the
  hub actually runs for it, ``pb_frames.publication_push`` from the stored publication's JSON text.

Timings are medians of interleaved repetitions, in microseconds per operation, in one process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from wsproto_lite.hub import pb_frames
from wsproto_lite.hub.pb_schema import MESSAGES, SCALARS
from wsproto_lite.hub.pb_wire import encode, varint
from wsproto_lite.hub.protocol import client_info_json, publication_json

DATA = b'{"text":"' + b"x" * 53 + b'"}'
INFO = {"user": "user-1", "client": "0f6b2c1e-3b7a-4d55-9d8e-2f1c9a7e6b10", "conn_info": b'{"name":"Ann"}'}


def package_classes() -> dict[str, Any]:
    """``client.proto``'s messages as ``protobuf`` classes, from the descriptor built here."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        raise SystemExit("benchmarks.pb_codec needs the protobuf package: pip install protobuf") from None
    fdp = descriptor_pb2.FileDescriptorProto(name="client.proto", package="cf", syntax="proto3")
    types = descriptor_pb2.FieldDescriptorProto
    for name, fields in MESSAGES.items():
        message = fdp.message_type.add(name=name)
        for field in fields.values():
            added = message.field.add(name=field.name, number=field.number)
            added.label = types.LABEL_REPEATED if field.repeated else types.LABEL_OPTIONAL
            if field.map_value is not None:
                entry = message.nested_type.add(name=field.name.title().replace("_", "") + "Entry")
                entry.options.map_entry = True
                for number, kind in ((1, field.kind), (2, field.map_value)):
                    _typed(entry.field.add(name=("key", "value")[number - 1], number=number), kind)
                added.type, added.type_name = types.TYPE_MESSAGE, f".cf.{name}.{entry.name}"
            else:
                _typed(added, field.kind)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"cf.{n}")) for n in MESSAGES}


def _typed(field: Any, kind: str) -> None:
    from google.protobuf import descriptor_pb2

    types = descriptor_pb2.FieldDescriptorProto
    if kind in SCALARS:
        field.type = getattr(types, "TYPE_" + kind.upper())
    else:
        field.type, field.type_name = types.TYPE_MESSAGE, ".cf." + kind
    if not field.HasField("label"):
        field.label = types.LABEL_OPTIONAL


def batch_frame() -> bytes:
    parts = []
    for i in range(1, 21):
        command = encode("Command", {"id": i, "publish": {"channel": "chat:room", "data": DATA}})
        parts += (varint(len(command)), command)
    return b"".join(parts)


def package_decode(classes: dict[str, Any]) -> Callable[[bytes], list[tuple[int, str, dict[str, Any]]]]:
    command_class = classes["Command"]

    def run(frame: bytes) -> list[tuple[int, str, dict[str, Any]]]:
        out = []
        pos = 0
        while pos < len(frame):
            size, pos = pb_frames.read_length(frame, pos)
            command = command_class.FromString(frame[pos : pos + size])
            pos += size
            method, params = "", {}
            for field, value in command.ListFields():
                if field.name != "id":
                    method, params = field.name, {f.name: v for f, v in value.ListFields()}
                    if "data" in params:
                        params["data"] = json.loads(params["data"])  # the hub's payloads are JSON
            out.append((command.id, method, params))
        return out

    return run


def ours_decode(frame: bytes) -> list[tuple[int, str, dict[str, Any]]]:
    return [(c.id, c.method, c.params) for c in pb_frames.commands_of(frame) if not isinstance(c, tuple)]


def package_encode(classes: dict[str, Any]) -> Callable[[], bytes]:
    reply_class = classes["Reply"]

    def run() -> bytes:
        reply = reply_class()
        push = reply.push
        push.channel = "chat:room"
        pub = push.pub
        pub.data = DATA
        pub.offset = 12345
        pub.info.user, pub.info.client, pub.info.conn_info = INFO["user"], INFO["client"], INFO["conn_info"]
        body = reply.SerializeToString()
        return varint(len(body)) + body

    return run


def ours_encode() -> bytes:
    body = encode(
        "Reply", {"push": {"channel": "chat:room", "pub": {"data": DATA, "info": INFO, "offset": 12345}}}
    )
    return varint(len(body)) + body


def _body(frame: bytes, classes: dict[str, Any]) -> Any:
    size, pos = pb_frames.read_length(frame, 0)
    return classes["Reply"].FromString(frame[pos : pos + size])


STORED = publication_json(
    12345, DATA.decode(), client_info_json(INFO["client"], INFO["user"], '{"name":"Ann"}')
)


def hub_push() -> bytes:
    """What the hub runs on the hot path: the push from the stored publication's JSON text."""
    return pb_frames.publication_push(STORED, "chat:room")


def timed(call: Callable[[], object], window: float = 0.05) -> float:
    """Microseconds per call over a window of at least ``window`` seconds."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < window:
        for _ in range(50):
            call()
        count += 50
    return elapsed / count * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.pb_codec", description=__doc__)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    classes = package_classes()
    frame = batch_frame()
    decode_package = package_decode(classes)
    assert ours_decode(frame) == decode_package(frame)
    encode_package = package_encode(classes)
    assert _body(ours_encode(), classes) == _body(encode_package(), classes) == _body(hub_push(), classes)
    cases: dict[str, Callable[[], object]] = {
        "decode 20-command frame: pb_wire": lambda: ours_decode(frame),
        "decode 20-command frame: protobuf": lambda: decode_package(frame),
        "encode publication push: pb_wire": ours_encode,
        "encode publication push: protobuf": encode_package,
        "encode publication push: pb_frames.publication_push (the hub's, from stored JSON)": hub_push,
    }
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, call in cases.items():
            runs[name].append(timed(call))
    print("| case | µs per operation (median) |\n|---|---:|")
    for name, values in runs.items():
        print(f"| {name} | {statistics.median(values):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
