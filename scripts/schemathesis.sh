#!/usr/bin/env bash
# schemathesis (pinned, from PyPI, in target/py-venv) against a fresh server on SQLite: every
# phase (examples, coverage, fuzzing, stateful) with --checks all, as a rider, a CX and an
# admin; exits non-zero on any failure. The same as `scripts/openapi.sh schemathesis`, where
# the options and the environment knobs (ST_MAX_EXAMPLES, ST_SEED, …) are described.
set -euo pipefail
exec "$(dirname "$0")/openapi.sh" schemathesis "$@"
