# shellcheck shell=bash
# A Kafka-protocol broker for scripts/infra.sh: tansu 0.6.0 (crates.io) with its SQLite
# storage engine, on 127.0.0.1 only. Sourced, not run; see the service interface described in
# scripts/infra.sh. tansu creates no topic by itself and has no transactions: the application
# provisions its topics and does not use transactions. Debian's librdkafka and kcat are too old
# to talk to it; the Rust clients bundle librdkafka 2.12.
#
#   $INFRA_DIR/kafka              working directory (the broker runs here)
#   $INFRA_DIR/kafka/tansu.db     storage: topics, messages, committed offsets (survives restarts)
#   $INFRA_DIR/kafka/tansu.pid    pid file
#   $INFRA_DIR/kafka/tansu.log    broker log
#
# The binary is built once with `cargo install` (about 8 minutes on 2 cores) into a cache
# outside the repository, $HOME/.cache/hexride/tansu-0.6.0, which fresh clones reuse.

KAFKA_PORT=${HEXRIDE_KAFKA_PORT:-59092}
KAFKA_ROOT=$INFRA_DIR/kafka
KAFKA_PIDFILE=$KAFKA_ROOT/tansu.pid
TANSU_VERSION=0.6.0
TANSU_ROOT=${HEXRIDE_TANSU_ROOT:-${HOME:-/root}/.cache/hexride/tansu-$TANSU_VERSION}
TANSU_BIN= # set by kafka_find_bin

kafka_components() { echo kafka; }

kafka_env() {
    echo "export TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
}

kafka_logfile() { echo "$KAFKA_ROOT/tansu.log"; }

kafka_check_component() {
    [ "$1" = kafka ] || die "unknown Kafka component: $1"
}

# --- the binary ------------------------------------------------------------------------------

kafka_find_bin() {
    [ -n "$TANSU_BIN" ] && return 0
    local bin=${HEXRIDE_TANSU_BIN:-$TANSU_ROOT/bin/tansu}
    [ -x "$bin" ] || return 1
    TANSU_BIN=$bin
}

# kafka_ensure_bin: build tansu into $TANSU_ROOT unless it is there. One build at a time per
# cache (a lock next to it), and the build output goes to stderr so that stdout stays clean
# for `eval "$(scripts/infra.sh up)"`.
kafka_ensure_bin() {
    kafka_find_bin && return 0
    [ -z "${HEXRIDE_TANSU_BIN:-}" ] || die "HEXRIDE_TANSU_BIN=$HEXRIDE_TANSU_BIN is not executable"
    command -v cargo >/dev/null || die "tansu is not built ($TANSU_ROOT/bin/tansu) and there is no cargo to build it"
    mkdir -p "$(dirname "$TANSU_ROOT")"
    (
        exec 8>"$TANSU_ROOT.lock"
        flock -w 3600 8 || die "another build of tansu holds $TANSU_ROOT.lock"
        [ -x "$TANSU_ROOT/bin/tansu" ] && exit 0
        log "kafka: building tansu $TANSU_VERSION into $TANSU_ROOT (once; about 8 minutes on 2 cores)"
        cargo install tansu --version "$TANSU_VERSION" --locked \
            --features dynostore,libsql,postgres --root "$TANSU_ROOT" >&2
    ) 9>&- || die "building tansu failed"
    kafka_find_bin || die "no tansu binary in $TANSU_ROOT/bin after building it"
}

# --- probes ----------------------------------------------------------------------------------

# kafka_pid: the live broker working in $KAFKA_ROOT (the pid file first, then by directory).
kafka_pid() {
    local pid
    pid=$(head -n 1 "$KAFKA_PIDFILE" 2>/dev/null || true)
    if pid_in_dir "$pid" "$KAFKA_ROOT"; then
        echo "$pid"
        return 0
    fi
    procs_in_dir "$KAFKA_ROOT" | head -n 1
}
kafka_running() { [ -n "$(procs_in_dir "$KAFKA_ROOT")" ]; }
kafka_stopped() { ! kafka_running && ! port_open "$KAFKA_PORT"; }
# Up: a live (not zombie) broker process in our directory, and the port accepts connections.
kafka_is_up() { kafka_running && port_open "$KAFKA_PORT"; }
# kafka_up_or_gone: true once the broker is up, or once it has exited (give it a second to
# appear first), so a broker that fails at start-up is reported at once.
kafka_up_or_gone() {
    kafka_is_up && return 0
    ((SECONDS > KAFKA_STARTED + 1)) && ! kafka_running
}

# --- starting and stopping -------------------------------------------------------------------

kafka_start_server() {
    local logfile pid
    logfile=$(kafka_logfile kafka)
    if kafka_running; then
        wait_for "$INFRA_TIMEOUT" kafka_is_up || {
            show_log "$logfile"
            die "kafka: running but not accepting connections on port $KAFKA_PORT"
        }
        return 0
    fi
    ! port_open "$KAFKA_PORT" || die "kafka: port $KAFKA_PORT is taken by another process (set HEXRIDE_KAFKA_PORT)"
    rm -f "$KAFKA_PIDFILE"
    KAFKA_STARTED=$SECONDS
    log "kafka: starting tansu on 127.0.0.1:$KAFKA_PORT"
    # In its own session (so a terminal's Ctrl-C or a test runner's process-group kill does not
    # reach it), from its data directory (the sqlite:// path is relative to it), without the
    # lock descriptor. The storage URL and listeners are flags, which win over any
    # STORAGE_ENGINE / LISTENER_URL in the environment.
    (
        cd "$KAFKA_ROOT" || exit 1
        exec setsid "$TANSU_BIN" broker \
            --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
            --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
            --storage-engine "sqlite://tansu.db"
    ) </dev/null >>"$logfile" 2>&1 9>&- &
    if ! wait_for "$INFRA_TIMEOUT" kafka_up_or_gone; then
        show_log "$logfile"
        die "kafka: not accepting connections on port $KAFKA_PORT after ${INFRA_TIMEOUT}s"
    fi
    if ! kafka_is_up; then
        show_log "$logfile"
        die "kafka: tansu exited during start-up"
    fi
    pid=$(kafka_pid)
    echo "$pid" >"$KAFKA_PIDFILE"
}

# kafka_stop_server: SIGTERM, then SIGKILL after 10 s; no-op when not running.
kafka_stop_server() {
    local pid
    kafka_running || return 0
    log "kafka: stopping"
    pid=$(kafka_pid)
    if pid_in_dir "$pid" "$KAFKA_ROOT"; then kill -TERM "$pid"; fi
    kafka_wait_stopped
}

kafka_wait_stopped() {
    wait_for 10 kafka_stopped && return 0
    log "kafka: SIGKILL leftover processes"
    procs_in_dir "$KAFKA_ROOT" | xargs -r kill -KILL
    wait_for 5 kafka_stopped || die "kafka: still running in $KAFKA_ROOT or port $KAFKA_PORT still taken"
}

# --- the service interface -------------------------------------------------------------------

kafka_up() {
    kafka_ensure_bin
    mkdir -p "$KAFKA_ROOT"
    kafka_start_server
}

kafka_down() { kafka_stop_server; }

kafka_start() {
    kafka_check_component "$1"
    kafka_up
}

kafka_stop() {
    kafka_check_component "$1"
    kafka_stop_server
}

# kafka_kill COMPONENT: SIGKILL the broker, as a crash would, and wait until its port is closed.
kafka_kill() {
    local pid
    kafka_check_component "$1"
    pid=$(kafka_pid)
    if ! pid_in_dir "$pid" "$KAFKA_ROOT"; then
        log "kafka: not running"
        return 0
    fi
    log "kafka: SIGKILL $pid"
    kill -KILL "$pid"
    kafka_wait_stopped
}

kafka_status() {
    local state detail=
    if kafka_is_up; then
        state=up
        detail="pid=$(kafka_pid)"
    elif kafka_running; then
        state=starting
    else
        state=down
        if port_open "$KAFKA_PORT"; then detail="(port taken by another process)"; fi
    fi
    printf '%-16s %-9s 127.0.0.1:%-6s %s\n' kafka "$state" "$KAFKA_PORT" "$detail"
    [ "$state" = up ]
}
