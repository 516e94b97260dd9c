# shellcheck shell=bash
# A Python virtualenv for the repository's Python tools, at target/py-venv, with exactly the
# versions pinned in scripts/requirements-openapi.txt. Sourced, not run:
#
#   source scripts/lib/venv.sh
#   venv_ensure            # creates or reuses the venv; puts its bin/ first on PATH
#   "$VENV_DIR/bin/st" --version
#
# Reuse is decided by a fingerprint stored in the venv (.requirements.sha256): the SHA-256 of
# the requirements file plus the interpreter's version. When it matches, venv_ensure returns
# at once (no pip, no network); when it does not (or a previous install was interrupted), the
# venv is rebuilt from scratch. A lock file serialises concurrent callers.
#
# Settings (environment):
#   HEXRIDE_PYTHON        the interpreter to build the venv from (default: python3; needs
#                         3.11 or later, as schemathesis and openapi-python-client do)
#   HEXRIDE_VENV_DIR      where the venv lives (default: <repo>/target/py-venv)
#   HEXRIDE_REQUIREMENTS  the pinned requirements (default: <repo>/scripts/requirements-openapi.txt)

VENV_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV_DIR=${HEXRIDE_VENV_DIR:-$VENV_REPO_ROOT/target/py-venv}
VENV_REQUIREMENTS=${HEXRIDE_REQUIREMENTS:-$VENV_REPO_ROOT/scripts/requirements-openapi.txt}
VENV_PYTHON=${HEXRIDE_PYTHON:-python3}

venv_log() { printf 'venv: %s\n' "$*" >&2; }

# The fingerprint of what the venv should contain.
venv_fingerprint() {
    local pyver
    pyver=$("$VENV_PYTHON" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))') || return 1
    { cat "$VENV_REQUIREMENTS"; echo "python=$pyver"; } | sha256sum | cut -d' ' -f1
}

venv_is_current() {
    [ -x "$VENV_DIR/bin/python" ] && [ -f "$VENV_DIR/.requirements.sha256" ] &&
        [ "$(cat "$VENV_DIR/.requirements.sha256")" = "$1" ]
}

venv_ensure() {
    local want
    command -v "$VENV_PYTHON" >/dev/null 2>&1 || { venv_log "error: no $VENV_PYTHON"; return 1; }
    "$VENV_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        { venv_log "error: $VENV_PYTHON is older than 3.11"; return 1; }
    [ -f "$VENV_REQUIREMENTS" ] || { venv_log "error: no $VENV_REQUIREMENTS"; return 1; }
    want=$(venv_fingerprint) || return 1

    if ! venv_is_current "$want"; then
        mkdir -p "$(dirname "$VENV_DIR")"
        (
            # Another caller may be building it: wait, then look again.
            flock -w 900 9 || { venv_log "error: timed out waiting for $VENV_DIR.lock"; exit 1; }
            venv_is_current "$want" && exit 0
            venv_log "building $VENV_DIR from $(basename "$VENV_REQUIREMENTS") (about a minute)"
            rm -rf "$VENV_DIR"
            "$VENV_PYTHON" -m venv "$VENV_DIR" || exit 1
            "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check \
                --no-input -r "$VENV_REQUIREMENTS" || { venv_log "error: pip install failed"; exit 1; }
            "$VENV_DIR/bin/python" -m pip check --disable-pip-version-check >/dev/null ||
                { venv_log "error: pip check failed"; exit 1; }
            # Written last: an interrupted install leaves no fingerprint and is redone.
            echo "$want" >"$VENV_DIR/.requirements.sha256"
        ) 9>"$VENV_DIR.lock" || return 1
    fi
    case ":$PATH:" in
        *":$VENV_DIR/bin:"*) ;;
        *) PATH=$VENV_DIR/bin:$PATH ;;
    esac
    export PATH VIRTUAL_ENV=$VENV_DIR
}
