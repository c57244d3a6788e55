"""The core imports the standard library only: not the I/O layer, the hub, the adapters, nor any package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
before = set(sys.modules)
import wsproto_lite, wsproto_lite.extensions
from wsproto_lite import _connection, _deflate, _handshake, _reader, _writer
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_the_core_imports_only_the_standard_library_and_itself() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(done.stdout)
    ours = [name for name in loaded if name.split(".")[0] == "wsproto_lite"]
    foreign = [
        name
        for name in loaded
        if name.split(".")[0] not in sys.stdlib_module_names and name.split(".")[0] != "wsproto_lite"
    ]
    assert foreign == []
    assert [name for name in ours if name.split(".")[1:2] in (["server"], ["hub"], ["adapters"])] == []
    assert "wsproto_lite._connection" in ours
