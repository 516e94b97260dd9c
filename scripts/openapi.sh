#!/usr/bin/env bash
# Checks of the HTTP API's OpenAPI document against a real server, run from anywhere:
#
#   scripts/openapi.sh [all]        validate + schemathesis + client, against one server
#   scripts/openapi.sh validate     openapi-spec-validator on GET /openapi.json (OpenAPI 3.1)
#   scripts/openapi.sh schemathesis `st run`, every phase and `--checks all`, once per role
#                                   (rider, cx, admin), then DELETE /members/me with spare
#                                   accounts (so the main runs keep their members active)
#   scripts/openapi.sh client       openapi-python-client generates a client, then
#                                   tests/openapi_client/drive.py walks an order through it
#   scripts/openapi.sh serve        start the server as the checks do and wait (Ctrl-C stops
#                                   it): for poking at it by hand; tokens are printed
#
# Every command starts its own server: the binary $HEXRIDE_BIN (default target/debug/app-server;
# nothing is built here) on a fresh SQLite database under target/openapi/, on free loopback
# ports, with a random JWT secret, cheap password hashing and high (finite) rate limits; it
# creates an admin and a cx (`app-server admin create-user`) and a rider (sign-up), logs them
# in, and stops the server by its PID on exit. The Python tools come from target/py-venv
# (scripts/lib/venv.sh, versions pinned in scripts/requirements-openapi.txt).
#
# Output under target/openapi/: openapi.json (the document served), server.log,
# schemathesis/<role>/ (JUnit XML, NDJSON events, the run's console output; unsanitised, so
# they hold that run's tokens, which die with its server), schemathesis/summary.txt (failures
# grouped by check, operation, status and problem code, each with a repro curl that uses
# $HEXRIDE_URL and $<ROLE>_TOKEN as `serve` prints them), client/ (the generated package and
# the generator's output). The Python helpers live in tests/openapi_client/: validate_spec.py,
# st_summary.py, generator_summary.py, st_hooks.py, schemathesis.toml and drive.py.
# Exit status: non-zero when any check failed.
#
# Environment:
#   HEXRIDE_BIN            server binary, relative to the repository (default target/debug/app-server)
#   ST_MAX_EXAMPLES        schemathesis test cases per operation and phase (default 100)
#   ST_SEED                schemathesis seed (default 20251202), for reproducible runs
#   ST_WORKERS             schemathesis workers (default 1: with 2, hypothesis hit flaky internal
#                          "Runtime Error"s (FlakyFailure, AST recursion depth) on POST /admin/coupons)
#   ST_ROLES               roles to fuzz as (default "rider cx admin")
#   ST_EXTRA_ARGS          more `st run` arguments, word-split (e.g. "--max-failures 50")
#   OPENAPI_KEEP=1         keep the run directory (database, passwords) after exit
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# shellcheck source=scripts/lib/venv.sh
source scripts/lib/venv.sh

OUT=$ROOT/target/openapi
HEXRIDE_BIN=${HEXRIDE_BIN:-target/debug/app-server}
ST_MAX_EXAMPLES=${ST_MAX_EXAMPLES:-100}
ST_SEED=${ST_SEED:-20251202}
ST_WORKERS=${ST_WORKERS:-1}
ST_ROLES=${ST_ROLES:-rider cx admin}
ST_EXTRA_ARGS=${ST_EXTRA_ARGS:-}
CLIENT_DIR=tests/openapi_client

log() { printf '\n==> %s\n' "$*"; }
say() { printf 'openapi: %s\n' "$*"; }
die() {
    printf 'openapi: error: %s\n' "$*" >&2
    exit 1
}

# --- the server ------------------------------------------------------------------------------

SERVER_PID=
RUN_DIR=
BASE_URL=

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_server() {
    local pid=$SERVER_PID
    SERVER_PID=
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        # shutdown_grace_secs is set to 5 below: give it that and a little more.
        for _ in $(seq 1 80); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "server $pid did not stop in 8 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
}

cleanup() {
    local status=$?
    stop_server
    if [ -n "$RUN_DIR" ] && [ -d "$RUN_DIR" ]; then
        if [ "${OPENAPI_KEEP:-0}" = 1 ]; then
            say "kept $RUN_DIR"
        else
            rm -rf "$RUN_DIR"
        fi
    fi
    exit "$status"
}

# The server's configuration, as APP__SECTION__KEY variables (config/default.toml holds the rest).
server_env() {
    local port=$1 admin_port=$2
    # Loopback only, on free ports, with a database of its own.
    echo "APP__SERVER__LISTEN=127.0.0.1:$port"
    echo "APP__SERVER__ADMIN_LISTEN=127.0.0.1:$admin_port"
    echo "APP__SERVER__ROLE=all"
    echo "APP__SERVER__REQUEST_TIMEOUT_SECS=10"
    echo "APP__SERVER__SHUTDOWN_GRACE_SECS=5"
    echo "APP__SERVER__DRAIN_SECS=0"
    echo "APP__DATABASE__URL=sqlite://$RUN_DIR/hexride.db"
    echo "APP__DATABASE__MIGRATE_ON_START=true"
    # Embedded everything: no Kafka, no Redis.
    echo "APP__KAFKA__BROKERS="
    echo "APP__REDIS__URL="
    echo "APP__DATA_PLATFORM__URL="
    # Secrets of this run only (≥ 32 bytes).
    echo "APP__AUTH__JWT_SECRET=$JWT_SECRET"
    echo "APP__INSURER__WEBHOOK_SECRET=$WEBHOOK_SECRET"
    # Tokens outlive the whole run.
    echo "APP__AUTH__ACCESS_TTL_SECS=7200"
    # Fuzzing sends thousands of requests from one address and e-mail: limits high, but finite.
    echo "APP__AUTH__LOGIN_PER_IP_PER_MINUTE=100000"
    echo "APP__AUTH__LOGIN_PER_IP_AND_EMAIL_PER_MINUTE=100000"
    echo "APP__AUTH__LOGIN_PER_EMAIL_PER_HOUR=1000000"
    echo "APP__AUTH__SIGN_UP_PER_IP_PER_MINUTE=100000"
    echo "APP__AUTH__API_PER_MEMBER_PER_MINUTE=1000000"
    # Cheap password hashes (the tests' settings): sign-up and login are fuzzed too.
    echo "APP__AUTH__ARGON2_MEMORY_KIB=1024"
    echo "APP__AUTH__ARGON2_ITERATIONS=1"
    echo "APP__LOG__FORMAT=json"
    echo "APP__LOG__LEVEL=info"
}

# run_app ARGS...: the binary with the server's configuration in its environment.
run_app() {
    local -a vars
    mapfile -t vars < <(server_env "$SERVER_PORT" "$ADMIN_PORT")
    env "${vars[@]}" "$HEXRIDE_BIN" "$@"
}

# json FIELD: a top-level field of the JSON object on standard input.
json() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# api METHOD PATH [BODY] [TOKEN]: one request; prints the body, then the status on its own line.
api() {
    local method=$1 path=$2 body=${3:-} token=${4:-}
    local -a args=(-sS --max-time 30 -X "$method" -w '\n%{http_code}' "$BASE_URL$path")
    [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
    curl "${args[@]}"
}

# request_ok EXPECTED METHOD PATH [BODY] [TOKEN]: the body of a request that must answer EXPECTED.
request_ok() {
    local expected=$1 reply status
    shift
    reply=$(api "$@") || die "$1 $2: no answer"
    status=${reply##*$'\n'}
    [ "$status" = "$expected" ] || die "$1 $2: HTTP $status (expected $expected): ${reply%$'\n'*}"
    printf '%s\n' "${reply%$'\n'*}"
}

# create_staff ROLE EMAIL: a staff account made with `app-server admin create-user`.
create_staff() {
    local role=$1 email=$2
    run_app admin create-user --role "$role" --email "$email" --name "OpenAPI $role" \
        --password-file "$RUN_DIR/password" >>"$OUT/server.log" 2>&1 ||
        die "admin create-user --role $role failed (see $OUT/server.log)"
}

# login EMAIL: an access token.
login() {
    request_ok 200 POST /api/v1/auth/login "{\"email\":\"$1\",\"password\":\"$PASSWORD\"}" | json access_token
}

# start_server: the server on a fresh database, ready, with its accounts; sets BASE_URL,
# SERVER_PID and the tokens (RIDER_TOKEN, CX_TOKEN, ADMIN_TOKEN, and SPARE_<ROLE>_TOKEN for
# the withdrawal pass).
start_server() {
    [ -x "$HEXRIDE_BIN" ] || die "no server binary at $HEXRIDE_BIN (build it, or set HEXRIDE_BIN)"
    mkdir -p "$OUT"
    RUN_DIR=$(mktemp -d "$OUT/run.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    WEBHOOK_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    PASSWORD="openapi-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
    (umask 077 && printf '%s\n' "$PASSWORD" >"$RUN_DIR/password")
    : >"$OUT/server.log"

    local started=$SECONDS
    for _ in 1 2 3; do
        SERVER_PORT=$(free_port)
        ADMIN_PORT=$(free_port)
        [ "$SERVER_PORT" != "$ADMIN_PORT" ] || continue
        BASE_URL=http://127.0.0.1:$SERVER_PORT
        mapfile -t SERVER_VARS < <(server_env "$SERVER_PORT" "$ADMIN_PORT")
        env "${SERVER_VARS[@]}" "$HEXRIDE_BIN" serve >>"$OUT/server.log" 2>&1 &
        SERVER_PID=$!
        while kill -0 "$SERVER_PID" 2>/dev/null; do
            [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE_URL/health/ready")" = 200 ] && break
            [ $((SECONDS - started)) -lt 90 ] || die "server not ready after 90 s (see $OUT/server.log)"
            sleep 0.2
        done
        kill -0 "$SERVER_PID" 2>/dev/null && break
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        grep -qi 'address.*in use' "$OUT/server.log" || die "server exited at start-up (see $OUT/server.log)"
        say "port taken, trying others"
    done
    [ -n "$SERVER_PID" ] || die "could not start the server (see $OUT/server.log)"
    say "server $SERVER_PID ready at $BASE_URL in $((SECONDS - started)) s (log: $OUT/server.log)"

    # Staff through the CLI, riders through the API; the spares are withdrawn by the last pass.
    local role
    for role in admin cx; do
        create_staff "$role" "$role@openapi.test"
        create_staff "$role" "spare-$role@openapi.test"
    done
    for role in rider spare-rider; do
        request_ok 201 POST /api/v1/members \
            "{\"email\":\"$role@openapi.test\",\"password\":\"$PASSWORD\",\"name\":\"OpenAPI $role\",\"phone\":\"01012345678\"}" \
            >/dev/null
    done
    RIDER_TOKEN=$(login rider@openapi.test)
    CX_TOKEN=$(login cx@openapi.test)
    ADMIN_TOKEN=$(login admin@openapi.test)
    SPARE_RIDER_TOKEN=$(login spare-rider@openapi.test)
    SPARE_CX_TOKEN=$(login spare-cx@openapi.test)
    SPARE_ADMIN_TOKEN=$(login spare-admin@openapi.test)
    [ "$(request_ok 200 GET /api/v1/members/me "" "$ADMIN_TOKEN" | json role)" = admin ] ||
        die "the admin token is not an admin's"
    say "accounts ready: rider, cx and admin (+ a spare of each) @openapi.test"
}

token_of() {
    case $1 in
        rider) echo "$RIDER_TOKEN" ;;
        cx) echo "$CX_TOKEN" ;;
        admin) echo "$ADMIN_TOKEN" ;;
        spare-rider) echo "$SPARE_RIDER_TOKEN" ;;
        spare-cx) echo "$SPARE_CX_TOKEN" ;;
        spare-admin) echo "$SPARE_ADMIN_TOKEN" ;;
        *) die "unknown role $1" ;;
    esac
}

fetch_document() {
    curl -sS --fail --max-time 30 "$BASE_URL/openapi.json" -o "$OUT/openapi.json" ||
        die "GET /openapi.json failed"
}

# --- the checks ------------------------------------------------------------------------------

run_validate() {
    log "validate: openapi-spec-validator on $BASE_URL/openapi.json"
    fetch_document
    python "$CLIENT_DIR/validate_spec.py" "$OUT/openapi.json" --max-groups 30 --max-paths 8
}

# st_run NAME TOKEN ARGS...: one `st run` as a member with TOKEN; reports under schemathesis/NAME.
st_run() {
    local name=$1 token=$2 dir=$OUT/schemathesis/$1 status=0 started=$SECONDS
    shift 2
    rm -rf "$dir"
    mkdir -p "$dir"
    # Schemathesis keeps a crash cache (replayed first by later runs) and Hypothesis a
    # database in the working directory: both stay in this run's directory, so nothing lands
    # in the repository and every run starts from the seed alone.
    { printf '[cache]\ndirectory = "%s/cache"\n\n' "$dir"; cat "$ROOT/tests/openapi_client/schemathesis.toml"; } \
        >"$dir/schemathesis.toml"
    # --output-sanitize false: reports keep the exact requests (Idempotency-Key included) for
    # the repro curls; the tokens in them die with this server.
    # shellcheck disable=SC2086 # ST_EXTRA_ARGS is a list of words
    (cd "$dir" && SCHEMATHESIS_HOOKS="$ROOT/tests/openapi_client/st_hooks.py" st --config-file "$dir/schemathesis.toml" run "$BASE_URL/openapi.json" \
        --phases examples,coverage,fuzzing,stateful \
        --checks all \
        --max-examples "$ST_MAX_EXAMPLES" \
        --continue-on-failure \
        --seed "$ST_SEED" \
        --workers "$ST_WORKERS" \
        --request-timeout 15 \
        --max-response-time 10 \
        --generation-database none \
        --suppress-health-check all \
        --header "Authorization: Bearer $token" \
        --report junit,ndjson \
        --report-junit-path "$dir/junit.xml" \
        --report-ndjson-path "$dir/events.ndjson" \
        --no-color \
        --output-sanitize false \
        $ST_EXTRA_ARGS \
        "$@" >"$dir/console.txt" 2>&1) || status=$?
    # The console output's closing summary.
    say "st run as $name: exit $status in $((SECONDS - started)) s (full output: $dir/console.txt)"
    sed -n '/^Failures:$/,/^Reports:$/{/^Reports:$/d;/^$/d;p}' "$dir/console.txt"
    return "$status"
}

run_schemathesis() {
    log "schemathesis $(st --version | awk '{print $NF}'): roles $ST_ROLES, $ST_MAX_EXAMPLES examples per operation, seed $ST_SEED"
    local role status=0 names=()
    rm -rf "$OUT/schemathesis"
    for role in $ST_ROLES; do
        # Withdrawing the member the run authenticates as would turn the rest of it into noise:
        # DELETE /api/v1/members/me gets a pass of its own below, with spare accounts.
        st_run "$role" "$(token_of "$role")" --exclude-operation-id withdraw || status=1
        names+=("$role")
    done
    for role in $ST_ROLES; do
        st_run "withdraw-$role" "$(token_of "spare-$role")" --include-operation-id withdraw || status=1
        names+=("withdraw-$role")
    done
    python "$CLIENT_DIR/st_summary.py" --base-url "$BASE_URL" "${names[@]/#/$OUT/schemathesis/}" |
        tee "$OUT/schemathesis/summary.txt"
    return "$status"
}

run_client() {
    log "client: openapi-python-client $(openapi-python-client --version 2>/dev/null | awk '{print $NF}')"
    fetch_document
    local dir=$OUT/client status=0 gen_status=0
    rm -rf "$dir"
    mkdir -p "$dir"
    openapi-python-client generate --path "$OUT/openapi.json" --meta none \
        --output-path "$dir/hexride_client" >"$dir/generate.txt" 2>&1 || gen_status=$?
    if [ "$gen_status" -ne 0 ] || [ ! -f "$dir/hexride_client/client.py" ]; then
        say "openapi-python-client refused the document (exit $gen_status); its output:"
        python "$CLIENT_DIR/generator_summary.py" "$dir/generate.txt"
        return 1
    else
        say "client generated in $dir/hexride_client"
        python "$CLIENT_DIR/generator_summary.py" "$dir/generate.txt"
    fi
    PYTHONPATH=$dir HEXRIDE_URL=$BASE_URL HEXRIDE_ADMIN_TOKEN=$ADMIN_TOKEN \
        python "$CLIENT_DIR/drive.py" || status=1
    return "$status"
}

serve_forever() {
    log "serving at $BASE_URL (admin listener 127.0.0.1:$ADMIN_PORT); Ctrl-C stops"
    cat <<EOF
export HEXRIDE_URL=$BASE_URL
export RIDER_TOKEN=$RIDER_TOKEN
export CX_TOKEN=$CX_TOKEN
export ADMIN_TOKEN=$ADMIN_TOKEN
export SPARE_RIDER_TOKEN=$SPARE_RIDER_TOKEN
export SPARE_CX_TOKEN=$SPARE_CX_TOKEN
export SPARE_ADMIN_TOKEN=$SPARE_ADMIN_TOKEN
# accounts: {,spare-}{rider,cx,admin}@openapi.test, password in $RUN_DIR/password
EOF
    wait "$SERVER_PID"
}

# --- main ------------------------------------------------------------------------------------

main() {
    local command=${1:-all} status=0 started
    case $command in
        all | validate | schemathesis | client | serve) ;;
        -h | --help | help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            return 0
            ;;
        *) die "unknown command $command (all, validate, schemathesis, client, serve)" ;;
    esac
    started=$SECONDS
    venv_ensure
    start_server
    case $command in
        validate) run_validate || status=1 ;;
        schemathesis) run_schemathesis || status=1 ;;
        client) run_client || status=1 ;;
        serve) serve_forever ;;
        all)
            local -A result
            local part
            for part in validate schemathesis client; do
                local t0=$SECONDS
                if "run_$part"; then result[$part]="passed"; else result[$part]="FAILED" status=1; fi
                result[$part]+=" ($((SECONDS - t0)) s)"
            done
            log "summary"
            for part in validate schemathesis client; do printf '  %-13s %s\n' "$part" "${result[$part]}"; done
            ;;
    esac
    say "done in $((SECONDS - started)) s: $([ "$status" = 0 ] && echo passed || echo FAILED)"
    return "$status"
}

main "$@"
