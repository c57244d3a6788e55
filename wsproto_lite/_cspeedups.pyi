# Types of the compiled accelerator (_cspeedups.c); the pure-Python references are in _frames.py.
from typing import Any, TypeVar

from typing_extensions import Buffer

_Header = TypeVar("_Header", bound=tuple[Any, ...])

def apply_mask(data: Buffer, mask: Buffer, offset: int = 0) -> bytes: ...
def parse_messages(
    data: Buffer,
    pos: int,
    masked: bool,
    limit: int,
    out: list[Any],
    text_type: type,
    text_slot: Any,
    binary_type: type,
    binary_slot: Any,
    /,
) -> int: ...
def parse_message(
    data: Buffer,
    masked: bool,
    limit: int,
    text_type: type,
    text_slot: Any,
    binary_type: type,
    binary_slot: Any,
    /,
) -> Any | None: ...
def parse_header(
    header_type: type[_Header], error_type: type[BaseException], buf: Buffer, pos: int, /
) -> _Header | None: ...

class PayloadBuffer:
    def __init__(self, capacity: int = 0, text: bool = False) -> None: ...
    def __len__(self) -> int: ...
    def append(
        self, data: Buffer, start: int, end: int, mask: Buffer | None = None, offset: int = 0, /
    ) -> bool: ...
    def take(self) -> bytes: ...
    def take_text(self) -> str: ...

def encode_frame(
    opcode: int, payload: Buffer, fin: bool = True, rsv: int = 0, mask: Buffer | None = None
) -> bytes: ...
def coalesce(pieces: list[bytes], limit: int, /) -> list[bytes]: ...
