#!/usr/bin/env bash
# Install the Autobahn testsuite (wstest) for conformance/ runs.
#
# Idempotent: every step is skipped when its result is already there, so a
# second run takes about a second. Needs root (apt-get) only when python2.7
# is missing. The Debian mirror is read from this machine's own apt source at
# run time; no registry host is written in this repository.
#
#   bash conformance/setup.sh          # install (or verify) everything
#   AUTOBAHN_DIR=/some/dir bash conformance/setup.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AUTOBAHN_DIR="${AUTOBAHN_DIR:-$HERE/.autobahn}"
PY27_VENV="$AUTOBAHN_DIR/py27"
TOOL_VENV="$AUTOBAHN_DIR/venv-tool"
SUITE_VERSION="25.10.1"
PYTHON2=/usr/bin/python2.7
DEBIAN_SOURCES=/etc/apt/sources.list.d/debian.sources
BULLSEYE_SOURCES=/etc/apt/sources.list.d/bullseye.sources
BULLSEYE_PIN=/etc/apt/preferences.d/bullseye-low

log() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_python27() {
    if [ -x "$PYTHON2" ] && [ -f /usr/include/python2.7/Python.h ]; then
        log "python2.7 present: $("$PYTHON2" --version 2>&1)"
        return
    fi
    if [ ! -f "$BULLSEYE_SOURCES" ]; then
        local uri
        uri="$(awk '/^URIs:/ {print $2; exit}' "$DEBIAN_SOURCES" 2>/dev/null || true)"
        if [ -z "$uri" ]; then
            echo "setup.sh: no 'URIs:' line in $DEBIAN_SOURCES; add a bullseye apt source by hand" >&2
            exit 1
        fi
        log "adding the bullseye suite (low pin) from this machine's mirror"
        as_root tee "$BULLSEYE_SOURCES" >/dev/null <<EOF
Types: deb
URIs: $uri
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    if [ ! -f "$BULLSEYE_PIN" ]; then
        as_root tee "$BULLSEYE_PIN" >/dev/null <<EOF
Package: *
Pin: release n=bullseye
Pin-Priority: 100
EOF
    fi
    log "apt-get update && apt-get install python2.7 python2.7-dev (bullseye)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq -t bullseye python2.7 python2.7-dev
}

make_venv() {
    if [ -x "$PY27_VENV/bin/python" ] && "$PY27_VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
        log "py27 virtualenv present: $PY27_VENV"
        return
    fi
    mkdir -p "$AUTOBAHN_DIR"
    if [ ! -x "$TOOL_VENV/bin/virtualenv" ]; then
        log "creating the virtualenv tool venv (virtualenv<20.22 still makes 2.7 envs)"
        python3 -m venv "$TOOL_VENV"
        "$TOOL_VENV/bin/pip" install -q "virtualenv<20.22"
    fi
    log "creating $PY27_VENV"
    rm -rf "$PY27_VENV"
    "$TOOL_VENV/bin/virtualenv" -q -p "$PYTHON2" "$PY27_VENV"
}

install_suite() {
    local have
    have="$("$PY27_VENV/bin/python" -c 'import pkg_resources as p; print(p.get_distribution("autobahntestsuite").version)' 2>/dev/null || true)"
    if [ "$have" = "$SUITE_VERSION" ] && [ -x "$PY27_VENV/bin/wstest" ]; then
        log "autobahntestsuite $have present"
        return
    fi
    log "pip install autobahntestsuite==$SUITE_VERSION (compiles Twisted & co; a few minutes)"
    # The machine-wide constraint file is for Python 3 packages; ignore it here.
    PIP_CONSTRAINT="" "$PY27_VENV/bin/pip" install -q --no-cache-dir "autobahntestsuite==$SUITE_VERSION"
}

main() {
    local t0=$SECONDS
    install_python27
    make_venv
    install_suite
    "$PY27_VENV/bin/python" -c 'import autobahntestsuite' >/dev/null
    log "ready: $PY27_VENV/bin/wstest  ($((SECONDS - t0)) s)"
}

main "$@"
