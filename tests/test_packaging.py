"""The wheel as a user installs it: one top-level import name, a console script, no clash with their files.

Built from this checkout (``pip wheel --no-build-isolation``: no network), installed into a fresh venv, then
used from a folder holding the ``server.py`` and ``client.py`` that a WebSocket tutorial has its readers
write: neither may be imported or run by anything of ours.
"""

from __future__ import annotations

import re
import subprocess
import sys
import venv
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.ports import unused_port

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

#: What the tutorial's files would do if anything imported or ran them instead of ours.
TUTORIAL_FILES = {
    "server.py": 'raise SystemExit("the user\'s own server.py ran")\n',
    "client.py": 'raise SystemExit("the user\'s own client.py ran")\n',
    "adapters.py": 'raise SystemExit("the user\'s own adapters.py ran")\n',
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            ".",
        ],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    (built,) = out.glob("wsproto_lite-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel; returns its bin/ folder."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.create(env, with_pip=True)
    bin_dir = env / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    return bin_dir


@pytest.fixture
def tutorial_folder(tmp_path: Path) -> Path:
    for name, text in TUTORIAL_FILES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_wheel_holds_every_module_of_the_tree_and_no_other(wheel: Path) -> None:
    """Subpackages included (adapters.trio and adapters.asyncio are packages), nothing stale from a build."""
    tree = {path.relative_to(ROOT).as_posix() for path in (ROOT / "wsproto_lite").rglob("*.py")}
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if name.endswith(".py")}
    assert in_wheel == tree
    assert {"wsproto_lite/adapters/trio/__main__.py", "wsproto_lite/adapters/asyncio/__init__.py"} <= in_wheel


def test_the_wheel_has_one_top_level_package_and_a_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top = {name.split("/")[0] for name in names}
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert {t for t in top if not t.endswith(".dist-info")} == {"wsproto_lite"}
    assert re.search(r"^wsproto-lite = wsproto_lite\.server\.cli:main$", scripts, re.M)
    # the hub's page and documents travel with it
    for data in (
        "wsproto_lite/hub/static/index.html",
        "wsproto_lite/hub/PROTOCOL.md",
        "wsproto_lite/py.typed",
    ):
        assert data in names


def _readme_imports() -> list[str]:
    """Every ``from wsproto_lite… import …`` line of the README's Python blocks that needs no extra."""
    text = (ROOT / "README.md").read_text()
    lines: list[str] = []
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip()
            if re.match(r"(from wsproto_lite[\w.]* import [\w, ]+|import wsproto_lite[\w.]*)$", line):
                if not re.search(r"adapters\.(uvicorn|trio)", line):  # those need their extras
                    lines.append(line)
    return sorted(set(lines))


def test_readme_imports_work_from_a_folder_with_the_tutorials_files(
    installed: Path, tutorial_folder: Path
) -> None:
    imports = _readme_imports()
    assert any("wsproto_lite.server" in line for line in imports)
    imports += [
        "from wsproto_lite.adapters.asyncio import connect, serve",
        "from wsproto_lite.hub import HubServer, Hub",
        "import wsproto_lite.hub.client",
    ]
    code = "\n".join(imports) + "\nimport wsproto_lite; print(wsproto_lite.__file__)\n"
    done = subprocess.run(
        [str(installed / "python"), "-c", code],
        cwd=tutorial_folder,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "site-packages" in done.stdout  # the installed copy, not this checkout


def test_console_script_help_lists_every_command(installed: Path, tutorial_folder: Path) -> None:
    for command in ([str(installed / "wsproto-lite")], [str(installed / "python"), "-m", "wsproto_lite"]):
        done = subprocess.run(
            [*command, "--help"], cwd=tutorial_folder, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "{echo,hub,client}" in done.stdout


Start = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def start(installed: Path, tutorial_folder: Path) -> Iterator[Start]:
    """``wsproto-lite ARGS`` started in the tutorial's folder; every process is stopped by PID at the end."""
    started: list[subprocess.Popen[str]] = []

    def run(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [str(installed / "wsproto-lite"), *args],
            cwd=tutorial_folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(process)
        return process

    yield run
    for process in started:
        process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _wait_for_line(process: subprocess.Popen[str], needle: str) -> None:
    assert process.stdout is not None
    seen = []
    for line in process.stdout:  # the process prints where it listens, then keeps running
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} never printed; output: {''.join(seen)}")


def _run_python(installed: Path, folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(installed / "python"), "-c", code], cwd=folder, capture_output=True, text=True, timeout=60
    )


def test_echo_and_hub_run_from_the_console_script(
    start: Start, installed: Path, tutorial_folder: Path
) -> None:
    echo_port, hub_port = unused_port(), unused_port()
    _wait_for_line(start("echo", "--port", str(echo_port)), str(echo_port))
    client = (
        "from wsproto_lite.server.client import connect\n"
        f"with connect('ws://127.0.0.1:{echo_port}/', timeout=10) as ws:\n"
        "    ws.send('hello'); print(ws.recv(timeout=10))\n"
    )
    done = _run_python(installed, tutorial_folder, client)
    assert done.stdout.strip() == "hello", done.stderr

    _wait_for_line(start("hub", "--port", str(hub_port)), str(hub_port))
    url = f"http://127.0.0.1:{hub_port}/"
    page = f"import urllib.request\nprint(urllib.request.urlopen({url!r}, timeout=10).read())"
    done = _run_python(installed, tutorial_folder, page)
    assert done.returncode == 0, done.stderr
    assert "<html" in done.stdout.lower()
