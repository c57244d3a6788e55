"""The optional C accelerator (``_cspeedups.c``) against the pure-Python references in ``_frames.py``.

The comparisons import the compiled module directly, so they run in both CI passes (with and without
``WSPROTO_LITE_NO_SPEEDUPS=1``); they are skipped where it was not built (no C compiler).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wsproto_lite
from wsproto_lite import _frames, _speedups
from wsproto_lite._frames import PythonPayloadBuffer, python_apply_mask

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _compiled() -> ModuleType | None:
    try:
        from wsproto_lite import _cspeedups
    except ImportError:
        return None
    return _cspeedups


C = _compiled()
needs_c = pytest.mark.skipif(
    C is None, reason="C accelerator not built (python setup.py build_ext --inplace)"
)

keys = st.binary(min_size=4, max_size=4)
# Lengths around the word size, so every 0-7 byte tail after the 8-byte loop is covered, and larger ones.
payloads = st.one_of(
    st.binary(max_size=40), st.binary(max_size=3000), st.integers(0, 300_000).map(os.urandom)
)
offsets = st.one_of(st.integers(0, 7), st.integers(-(2**40), 2**40))


def unaligned(data: bytes, skew: int) -> memoryview:
    """``data`` as a view starting ``skew`` bytes into a larger buffer (not word-aligned)."""
    return memoryview(bytes(skew) + data)[skew:]


# -- which path is active ----------------------------------------------------------------------------


def test_speedups_enabled_tells_which_path_is_active() -> None:
    forced_off = os.environ.get("WSPROTO_LITE_NO_SPEEDUPS", "") not in ("", "0")
    assert wsproto_lite.speedups_enabled() is (C is not None and not forced_off)
    if wsproto_lite.speedups_enabled():
        assert C is not None
        assert _frames.apply_mask is C.apply_mask and _frames.PayloadBuffer is C.PayloadBuffer
        assert wsproto_lite.apply_mask is C.apply_mask
    else:
        assert _frames.apply_mask is python_apply_mask and _frames.PayloadBuffer is PythonPayloadBuffer


@pytest.mark.parametrize("value, enabled", [("1", False), ("yes", False), ("0", True), ("", True)])
def test_environment_variable_switches_the_accelerator_off(value: str, enabled: bool) -> None:
    env = {**os.environ, "WSPROTO_LITE_NO_SPEEDUPS": value}
    code = "import wsproto_lite as w; print(w.speedups_enabled(), w.apply_mask.__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    expected = enabled and C is not None
    assert out == [str(expected), "apply_mask" if expected else "python_apply_mask"]


def test_shim_reports_the_module_it_loaded() -> None:
    assert (_speedups.accelerator is not None) is wsproto_lite.speedups_enabled()


# -- apply_mask ----------------------------------------------------------------------------------------


@needs_c
@given(payloads, keys, offsets, st.integers(0, 7))
def test_c_apply_mask_equals_python(data: bytes, key: bytes, offset: int, skew: int) -> None:
    assert C is not None
    expected = python_apply_mask(data, key, offset)
    assert C.apply_mask(data, key, offset) == expected
    assert C.apply_mask(unaligned(data, skew), key, offset) == expected  # any alignment, memoryview
    assert C.apply_mask(bytearray(data), mask=key, offset=offset) == expected  # keywords, bytearray
    assert type(C.apply_mask(data, key)) is bytes


@needs_c
@given(st.binary(max_size=100), keys, st.integers(0, 100))
def test_c_apply_mask_in_pieces_equals_whole(data: bytes, key: bytes, cut: int) -> None:
    assert C is not None
    cut = min(cut, len(data))
    pieces = C.apply_mask(data[:cut], key, 0) + C.apply_mask(data[cut:], key, cut)
    assert pieces == C.apply_mask(data, key) == python_apply_mask(data, key)


@needs_c
@pytest.mark.parametrize(
    "args, kwargs, error",
    [
        ((b"abc", b"123"), {}, ValueError),  # mask of 3 bytes
        ((b"abc", b"12345"), {}, ValueError),
        ((b"abc",), {}, TypeError),
        ((b"abc", b"1234", 0, 0), {}, TypeError),
        ((b"abc", b"1234", 1), {"offset": 2}, TypeError),
        ((b"abc", b"1234"), {"key": 2}, TypeError),
        (("abc", b"1234"), {}, TypeError),  # str is not a buffer
        ((b"abc", b"1234", 2**64), {}, OverflowError),
        ((b"abc", b"1234", 1.5), {}, TypeError),
    ],
)
def test_c_apply_mask_checks_its_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], error: type
) -> None:
    assert C is not None
    with pytest.raises(error):
        C.apply_mask(*args, **kwargs)


# -- PayloadBuffer -------------------------------------------------------------------------------------

appends = st.lists(
    st.tuples(
        st.binary(max_size=700),
        st.integers(0, 700),
        st.integers(0, 700),
        st.one_of(st.none(), keys),
        offsets,
        st.integers(0, 7),
    ),
    max_size=8,
)


def _run(buffer: object, steps: list[tuple[bytes, int, int, bytes | None, int, int]]) -> list[object]:
    """Apply ``steps`` to ``buffer``; the results (return values, lengths, errors, takes) as a list."""
    seen: list[object] = []
    for chunk, start, end, key, offset, skew in steps:
        try:
            seen.append(buffer.append(unaligned(chunk, skew), start, end, key, offset))  # type: ignore[attr-defined]
        except ValueError:
            seen.append("ValueError")
        seen.append(len(buffer))  # type: ignore[arg-type]
    seen.append(buffer.take())  # type: ignore[attr-defined]
    seen.append(len(buffer))  # type: ignore[arg-type]
    return seen


@given(appends, st.integers(0, 5000))
def test_python_payload_buffer_is_the_join_of_unmasked_slices(
    steps: list[tuple[bytes, int, int, bytes | None, int, int]], capacity: int
) -> None:
    buffer = PythonPayloadBuffer(capacity)
    expected = b""
    for chunk, start, end, key, offset, _skew in steps:
        if 0 <= start <= end <= len(chunk):
            piece = chunk[start:end] if key is None else python_apply_mask(chunk[start:end], key, offset)
            assert buffer.append(chunk, start, end, key, offset) is piece.isascii()
            expected += piece
    assert buffer.take() == expected
    assert buffer.take() == b"" and len(buffer) == 0


@needs_c
@given(appends, st.integers(0, 5000))
def test_c_payload_buffer_equals_python(
    steps: list[tuple[bytes, int, int, bytes | None, int, int]], capacity: int
) -> None:
    assert C is not None
    assert _run(C.PayloadBuffer(capacity), steps) == _run(PythonPayloadBuffer(capacity), steps)


def _take_text(buffer: object) -> object:
    try:
        return buffer.take_text()  # type: ignore[attr-defined]
    except UnicodeDecodeError as exc:
        return ("UnicodeDecodeError", exc.reason, exc.start, exc.end)


_text_pieces = st.lists(
    st.one_of(
        st.text(max_size=50).map(str.encode),
        st.text(alphabet=st.characters(max_codepoint=127), min_size=100, max_size=3000).map(str.encode),
        st.binary(max_size=8),  # often not UTF-8, or a sequence cut in two by the next piece
    ),
    max_size=6,
)


@needs_c
@given(_text_pieces, st.integers(0, 5000), st.booleans(), keys, st.booleans())
def test_c_payload_buffer_take_text_equals_python(
    pieces: list[bytes], capacity: int, text: bool, key: bytes, take_bytes: bool
) -> None:
    """take_text: the same str, or the same UnicodeDecodeError (§8.1), in either storage, whatever the
    capacity (the str storage grows past it); take() of a text buffer gives the same bytes."""
    assert C is not None
    results = []
    for buffer in (C.PayloadBuffer(capacity, text), PythonPayloadBuffer(capacity, text)):
        offset = 0
        for piece in pieces:  # masked on the wire, unmasked on the way in
            buffer.append(python_apply_mask(piece, key, offset), 0, len(piece), key, offset)
            offset += len(piece)
        results.append(buffer.take() if take_bytes else _take_text(buffer))
        results.append(_take_text(buffer))  # empty again
    assert results[:2] == results[2:]
    assert results[1] == ""
    if isinstance(results[0], str):  # a well-formed str: hashing, comparing, re-encoding agree
        assert hash(results[0]) == hash(b"".join(pieces).decode()) and results[0].encode() == b"".join(pieces)


@needs_c
def test_c_payload_buffer_text_storage_at_every_size_around_its_capacity() -> None:
    assert C is not None
    for capacity in (0, 1, 7, 8, 9, 64):
        for n in range(0, 20):
            buffer = C.PayloadBuffer(capacity, True)
            for i in range(n):
                buffer.append(b"abcdefghijklmnopqrstuvwxyz", i, i + 1)
            text = buffer.take_text()
            assert (text, len(text), text.isascii()) == ("abcdefghijklmnopqrstuvwxyz"[:n], n, True)
            assert sys.getrefcount(text) == 2 or n <= 1  # ours alone (0 or 1 character: shared singletons)


@needs_c
def test_c_payload_buffer_grows_and_shrinks_to_what_was_written() -> None:
    assert C is not None
    buffer = C.PayloadBuffer(10)
    chunk = os.urandom(100_000)
    for i in range(0, 100_000, 7000):  # grows past the hint, many times
        buffer.append(chunk, i, min(i + 7000, 100_000), b"\x01\x02\x03\x04", i)
    taken = buffer.take()
    assert taken == python_apply_mask(chunk, b"\x01\x02\x03\x04")
    assert sys.getrefcount(taken) == 2  # the caller's only: the buffer kept no reference
    buffer.append(b"abc", 0, 3)
    assert buffer.take() == b"abc"  # usable again after take()
    assert buffer.take() == b""


@needs_c
def test_c_payload_buffer_ascii_flag_covers_every_position() -> None:
    assert C is not None
    for n in range(1, 20):
        for i in range(n):
            data = bytearray(b"a" * n)
            data[i] = 0x80
            buffer = C.PayloadBuffer()
            assert buffer.append(bytes(data), 0, n) is False
            assert buffer.append(b"\x00" * n, 0, n, bytes(data[:4].ljust(4, b"a"))) is (0x80 not in data[:4])


@needs_c
@pytest.mark.parametrize(
    "args, error",
    [
        ((b"abc", 2, 1), ValueError),
        ((b"abc", 0, 4), ValueError),
        ((b"abc", -1, 2), ValueError),
        ((b"abc", 0, 1, b"123"), ValueError),
        ((b"abc", 0, 1, 5), TypeError),
        (("abc", 0, 1), TypeError),
        ((b"abc", 0), TypeError),
        ((b"abc", 0, 2**64), OverflowError),
    ],
)
def test_c_payload_buffer_checks_its_arguments(args: tuple[object, ...], error: type) -> None:
    assert C is not None
    buffer = C.PayloadBuffer()
    buffer.append(b"kept", 0, 4)
    with pytest.raises(error):
        buffer.append(*args)
    assert buffer.take() == b"kept"  # a refused append leaves the buffer as it was
    with pytest.raises(ValueError):
        C.PayloadBuffer(-1)


@needs_c
def test_c_payload_buffer_is_freed_by_reference_counting() -> None:
    assert C is not None
    gc.disable()
    try:
        # Not tracked by the cyclic collector (it holds nothing that could lead back to it), so dropping
        # the last reference frees it at once; the payload it held goes with it.
        tracked = gc.is_tracked(C.PayloadBuffer())
        before = sys.getrefcount(C.PayloadBuffer)
        buffer = C.PayloadBuffer(1 << 20)
        buffer.append(b"x" * 1000, 0, 1000)
        alive = sys.getrefcount(C.PayloadBuffer)  # each instance holds a reference to its (heap) type
        del buffer
        after = sys.getrefcount(C.PayloadBuffer)
        assert not tracked
        assert (alive, after) == (before + 1, before)
    finally:
        gc.enable()


def test_shim_honours_the_environment_and_a_missing_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSPROTO_LITE_NO_SPEEDUPS", "1")
    assert _speedups._load() is None
    monkeypatch.setenv("WSPROTO_LITE_NO_SPEEDUPS", "0")
    assert _speedups._load() is C
    # as if it was never built
    monkeypatch.delattr(wsproto_lite, "_cspeedups", raising=False)
    monkeypatch.setitem(sys.modules, "wsproto_lite._cspeedups", None)
    assert _speedups._load() is None


def test_python_references_on_large_payloads_and_bad_input() -> None:
    data = os.urandom(600_000)  # several of the pure path's 256 KiB blocks, and a tail
    key = b"\x9a\x01\xff\x42"
    expected = bytes(b ^ key[(i + 3) % 4] for i, b in enumerate(data))
    assert python_apply_mask(data, key, 3) == expected
    if C is not None:
        assert C.apply_mask(data, key, 3) == expected
    with pytest.raises(ValueError):
        PythonPayloadBuffer(-1)
