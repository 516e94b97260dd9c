# shellcheck shell=bash
# Redis for scripts/infra.sh: one Redis 7 on 127.0.0.1, without persistence (a restart starts
# empty, as the fault tests expect), daemonized as the redis user when we are root. Sourced,
# not run; see the service interface described in scripts/infra.sh. Never the system Redis on
# port 6379: this one has its own port, directory, pid file and log.
#
#   $INFRA_DIR/redis             working directory (the server chdirs here)
#   $INFRA_DIR/redis/redis.pid   pid file
#   $INFRA_DIR/redis/redis.log   server log

REDIS_PORT=${HEXRIDE_REDIS_PORT:-56379}
REDIS_ROOT=$INFRA_DIR/redis
REDIS_PIDFILE=$REDIS_ROOT/redis.pid
REDIS_SERVER= # set by redis_find_bin

redis_components() { echo redis; }

redis_env() {
    echo "export TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
}

redis_logfile() { echo "$REDIS_ROOT/redis.log"; }

redis_check_component() {
    [ "$1" = redis ] || die "unknown Redis component: $1"
}

# --- binaries and directories ----------------------------------------------------------------

redis_find_bin() {
    [ -n "$REDIS_SERVER" ] && return 0
    REDIS_SERVER=${HEXRIDE_REDIS_SERVER:-$(command -v redis-server || true)}
    [ -n "$REDIS_SERVER" ] && [ -x "$REDIS_SERVER" ]
}

redis_ensure_bin() {
    if ! redis_find_bin; then
        [ -z "${HEXRIDE_REDIS_SERVER:-}" ] || die "HEXRIDE_REDIS_SERVER=$HEXRIDE_REDIS_SERVER is not executable"
        apt_install redis-server # Debian 12: Redis 7.0
        redis_find_bin || die "no redis-server after installing the package"
    fi
    local version
    version=$("$REDIS_SERVER" --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')
    [ "${version:-0}" -ge 7 ] || die "$REDIS_SERVER is Redis ${version:-?}; the adapters need Redis 7 or later"
    ensure_system_user redis
}

redis_prepare_dir() {
    mkdir -p "$REDIS_ROOT"
    if is_root; then
        chown redis: "$REDIS_ROOT"
        as_user redis test -w "$REDIS_ROOT" || die "user redis cannot write $REDIS_ROOT:" \
            "$(closed_ancestor redis "$REDIS_ROOT") is closed to it; set INFRA_DIR elsewhere"
    fi
}

# --- probes ----------------------------------------------------------------------------------

# redis_ping [PORT]: PING over bash's /dev/tcp (no redis-cli needed); true on +PONG.
redis_ping() {
    local reply port=${1:-$REDIS_PORT}
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 2 reply <&3 || exit 1
        [ "${reply%$'\r'}" = +PONG ]
    ) 2>/dev/null
}

redis_pid() { head -n 1 "$REDIS_PIDFILE" 2>/dev/null || true; }
redis_running() { [ -n "$(procs_in_dir "$REDIS_ROOT")" ]; }
redis_stopped() { ! redis_running && ! port_open "$REDIS_PORT"; }
redis_is_up() { redis_running && redis_ping; }

# --- starting and stopping -------------------------------------------------------------------

redis_start_server() {
    local logfile
    logfile=$(redis_logfile redis)
    if redis_running; then
        wait_for "$INFRA_TIMEOUT" redis_ping || {
            show_log "$logfile"
            die "redis: running but not answering PING on port $REDIS_PORT"
        }
        return 0
    fi
    ! port_open "$REDIS_PORT" || die "redis: port $REDIS_PORT is taken by another process (set HEXRIDE_REDIS_PORT)"
    # Nothing runs in the directory: the pid file is stale (left by a killed server).
    rm -f "$REDIS_PIDFILE"
    log "redis: starting on 127.0.0.1:$REDIS_PORT"
    as_user redis "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 \
        --save '' --appendonly no \
        --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$logfile" --dir "$REDIS_ROOT" \
        --maxclients 10000 || {
        show_log "$logfile"
        die "redis: failed to start"
    }
    wait_for "$INFRA_TIMEOUT" redis_is_up || {
        show_log "$logfile"
        die "redis: not answering PING on port $REDIS_PORT after ${INFRA_TIMEOUT}s"
    }
}

# redis_stop_server: SIGTERM (no persistence, so it exits at once); no-op when not running.
redis_stop_server() {
    local pid
    redis_running || return 0
    log "redis: stopping"
    pid=$(redis_pid)
    if pid_in_dir "$pid" "$REDIS_ROOT"; then kill -TERM "$pid"; fi
    redis_wait_stopped
}

redis_wait_stopped() {
    wait_for 10 redis_stopped && return 0
    log "redis: SIGKILL leftover processes"
    procs_in_dir "$REDIS_ROOT" | xargs -r kill -KILL
    wait_for 5 redis_stopped || die "redis: still running in $REDIS_ROOT or port $REDIS_PORT still taken"
}

# --- the service interface -------------------------------------------------------------------

redis_up() {
    redis_ensure_bin
    redis_prepare_dir
    redis_start_server
}

redis_down() { redis_stop_server; }

redis_start() {
    redis_check_component "$1"
    redis_up
}

redis_stop() {
    redis_check_component "$1"
    redis_stop_server
}

# redis_kill COMPONENT: SIGKILL the server named in the pid file, as a crash would, and wait
# until its port is closed.
redis_kill() {
    local pid
    redis_check_component "$1"
    pid=$(redis_pid)
    if ! pid_in_dir "$pid" "$REDIS_ROOT"; then
        log "redis: not running"
        return 0
    fi
    log "redis: SIGKILL $pid"
    kill -KILL "$pid"
    redis_wait_stopped
}

redis_status() {
    local state detail=
    if redis_is_up; then
        state=up
        detail="pid=$(redis_pid)"
    elif redis_running; then
        state=starting
    else
        state=down
        if port_open "$REDIS_PORT"; then detail="(port taken by another process)"; fi
    fi
    printf '%-16s %-9s 127.0.0.1:%-6s %s\n' redis "$state" "$REDIS_PORT" "$detail"
    [ "$state" = up ]
}
