"""No close-code literal in the I/O layer, the adapters and the hub: ``CloseCode`` and the hub's named codes.

A number counts as a close code when it lies in 1000-1015 or 3000-4999 and it is an argument of a call
named like a close (``close``, ``disconnect``, ``Disconnected``, ``_lost``, ``fail``), a ``code`` default or
keyword, or on a line that speaks of a code or a close; or when a module-level UPPER_CASE name is set
to a number in 1000-1015 (a private copy of a ``CloseCode`` member) and is not named as a bound
(``MAX_...``/``MIN_...``: a count, not a code). The named codes are defined once:
``CloseCode`` in the core, ``DisconnectCode``/``UnsubscribeCode`` in ``hub/protocol.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "wsproto_lite"
#: Where the named hub codes are defined.
DEFINITIONS = {("hub/protocol.py", "DisconnectCode"), ("hub/protocol.py", "UnsubscribeCode")}

#: Module-level names that hold a bound (``MAX_BATCH = 1000``), not a close code.
BOUND_PREFIXES = ("MAX_", "MIN_")
CLOSE_CALL = re.compile(r"close|disconnect|_lost|fail", re.IGNORECASE)
CODE_WORDS = re.compile(r"code|close|disconnect", re.IGNORECASE)


def _is_close_code(value: object) -> bool:
    return type(value) is int and (1000 <= value <= 1015 or 3000 <= value <= 4999)


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def close_code_literals(source: str) -> list[tuple[int, int]]:
    """(line, value) of each close-code literal in ``source``, outside the named codes' definitions."""
    tree = ast.parse(source)
    lines = source.splitlines()
    skip: set[int] = set()  # ids of constants inside the definitions
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in {name for _, name in DEFINITIONS}:
            skip.update(id(inner) for inner in ast.walk(node))
    found: set[tuple[int, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and CLOSE_CALL.search(_call_name(node)):
            arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
            found.update((arg.lineno, arg.value) for arg in arguments if isinstance(arg, ast.Constant))
        elif isinstance(node, ast.arguments):
            named = [*node.posonlyargs, *node.args]
            pairs = zip(named[len(named) - len(node.defaults) :], node.defaults, strict=True)
            kw_pairs = zip(node.kwonlyargs, node.kw_defaults, strict=True)
            for arg, default in [*pairs, *kw_pairs]:
                if "code" in arg.arg and isinstance(default, ast.Constant):
                    found.add((default.lineno, default.value))
        elif isinstance(node, ast.Constant) and id(node) not in skip:
            if CODE_WORDS.search(lines[node.lineno - 1].split("#")[0]):
                found.add((node.lineno, node.value))
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant):
            value = statement.value.value
            names = [target.id for target in statement.targets if isinstance(target, ast.Name)]
            codes = [name for name in names if name.isupper() and not name.startswith(BOUND_PREFIXES)]
            if type(value) is int and 1000 <= value <= 1015 and codes:
                found.add((statement.lineno, value))
    return sorted((line, value) for line, value in found if _is_close_code(value))


def _modules() -> list[str]:
    owned = [PACKAGE / layer for layer in ("server", "adapters", "hub")]
    paths = sorted(path for folder in owned for path in folder.glob("*.py"))
    names = [path.relative_to(PACKAGE).as_posix() for path in paths]
    return names


@pytest.mark.parametrize("module", _modules())
def test_no_close_code_literals(module: str) -> None:
    assert close_code_literals((PACKAGE / module).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "conn.close(1008, 'rate limit')\n",
        "raise HubDisconnected(1000, 'bye')\n",
        "def close(self, code: int = 1001) -> None: ...\n",
        "SERVICE_RESTART = 1012\n",
        "self._lost(\n    1006, 'gone'\n)\n",
        "ok = code in (1000, 1001, 1005)\n",
        "message = {'type': 'websocket.disconnect', 'code': 4001}\n",
    ],
)
def test_the_check_finds_literals(source: str) -> None:
    assert close_code_literals(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "conn.close(CloseCode.POLICY_VIOLATION, 'rate limit')\n",
        "data = sock.recv(4096)\n",
        "ttl_ms = int(ttl * 1000)\n",
        "class DisconnectCode:\n    SHUTDOWN = 4000\n",
        "MAX_BATCH = 1000\n",
    ],
)
def test_the_check_leaves_other_numbers(source: str) -> None:
    assert close_code_literals(source) == []
