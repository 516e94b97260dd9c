#!/usr/bin/env bash
# Every check CI runs, in order: formatting, lints, the project's own test services, the
# whole test suite against them, and the rule that the core crates never depend on
# infrastructure crates. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "disk space (test binaries and the Kafka broker build need several GB)"
df -h . | tail -1
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((6 * 1024 * 1024)) ]; then
    echo "warning: less than 6 GB free here; linking the test binaries may fail" >&2
fi

step "test infrastructure: scripts/infra.sh up, in the background while the code compiles"
# The project's own PostgreSQL primary and two replicas, MariaDB pair, Redis and Kafka broker
# (never the system instances). On a new machine the broker (tansu) is built first, once, into
# ~/.cache/hexride: 15 minutes or more on 2 cores, so it overlaps the compile below.
infra_out=$(mktemp)
infra_log=$(mktemp)
scripts/infra.sh up >"$infra_out" 2>"$infra_log" &
infra_pid=$!
plans_pid=
trap 'kill "$infra_pid" $plans_pid 2>/dev/null || true' EXIT
echo "  started (pid $infra_pid)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "deployment files: alert rules and their unit tests (promtool), the dashboard, the nginx site"
scripts/check-deploy.sh

step "compile the tests and the server (cluster_lb runs the app-server binary as processes)"
cargo build --locked -q -p app-server
cargo test --workspace --locked --no-run -q
plans_bin=$(cargo test --locked -p tests --test query_plans --no-run 2>&1 |
    sed -n 's/^ *Executable .*(\(.*\))$/\1/p')
[ -x "$plans_bin" ] || { echo "the query_plans test binary was not found" >&2; exit 1; }
plans_bin=$(realpath "$plans_bin") # it runs from tests/, as cargo runs it

step "query plans at a million riders: in the background, once PostgreSQL and MariaDB are up"
# tests/tests/query_plans.rs fills its own database, hexride_scale, on both primaries (minutes,
# on a new machine) and reads nothing else, so it runs beside the rest of the suite, which
# skips it below. PostgreSQL and MariaDB come up before the broker is built.
plans_log=$(mktemp)
(
    until scripts/infra.sh status pg mariadb >/dev/null 2>&1; do
        kill -0 "$infra_pid" 2>/dev/null || exit 1
        sleep 5
    done
    eval "$(scripts/infra.sh env)"
    unset HEXRIDE_SKIP_INTEGRATION
    cd tests && exec "$plans_bin" --nocapture
) >"$plans_log" 2>&1 &
plans_pid=$!
echo "  started (pid $plans_pid, log $plans_log)"

step "wait for the test infrastructure"
if ! wait "$infra_pid"; then
    cat "$infra_log" >&2
    echo "scripts/infra.sh up failed" >&2
    exit 1
fi
trap 'kill $plans_pid 2>/dev/null || true' EXIT
tail -n 3 "$infra_log"
# Integration tests fail rather than skip when a service is missing: skipping is never allowed
# here.
eval "$(cat "$infra_out")"
rm -f "$infra_out" "$infra_log"
unset HEXRIDE_SKIP_INTEGRATION

step "cargo test --workspace (but the query plans, running since the databases came up)"
cargo test --workspace --locked -- --skip _at_scale

step "query plans at a million riders (started above)"
if ! wait "$plans_pid"; then
    cat "$plans_log" >&2
    echo "tests/tests/query_plans.rs failed" >&2
    exit 1
fi
trap - EXIT
grep -E '^(PostgreSQL|MariaDB)(: | · )|^test result' "$plans_log"
rm -f "$plans_log"

step "the library examples: hexride embedded without HTTP, and its router inside another axum app"
cargo run --locked -q -p tests --example embed_use_cases
cargo run --locked -q -p tests --example embed_router

step "the OpenAPI document against the real server: validator, schemathesis, a generated client"
# Valid OpenAPI 3.1 (openapi-spec-validator); schemathesis with every phase and --checks all
# as a rider, a CX and an admin, 0 failures; openapi-python-client generates a client that
# signs up, logs in, orders and pays. Pinned tools in target/py-venv; the server on SQLite.
scripts/openapi.sh all

step "the CX admin web in a real browser: Debian's Chromium driven by playwright-core"
# Installs chromium and fonts-noto-cjk with apt and playwright-core with npm ci when missing;
# the test starts its own server on SQLite.
scripts/admin-web-test.sh

step "core crates stay free of sqlx, axum, rdkafka and redis"
status=0
for crate in core-domain ports application; do
    offenders=$(cargo tree -p "$crate" --locked --prefix none --edges normal,build,dev \
        | grep -E '^(sqlx|sqlx-[a-z-]+|axum|axum-core|rdkafka|rdkafka-sys|redis) v' | sort -u || true)
    if [ -n "$offenders" ]; then
        echo "  $crate depends on: $offenders"
        status=1
    else
        echo "  $crate: clean"
    fi
done

step "no dependency with an unfixed advisory: rsa (RUSTSEC-2023-0071)"
if cargo tree --workspace --locked --prefix none -i rsa >/dev/null 2>&1; then
    echo "  rsa is in the dependency tree again:"
    cargo tree --workspace --locked -i rsa | head -20
    status=1
else
    echo "  rsa: absent"
fi
exit $status
