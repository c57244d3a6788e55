# Types of the compiled fan-out loop (_cfanout.c); its pure-Python reference: server/fanout.py send_many_py.
from typing_extensions import Buffer

def send_many(fds: list[int], data: Buffer, /) -> list[tuple[int, int]]: ...
