# shellcheck shell=bash
# PostgreSQL for scripts/infra.sh: a primary and two streaming hot-standby replicas, run from the
# installed Debian binaries as the postgres user. Sourced, not run; see the service interface
# described in scripts/infra.sh.
#
#   $INFRA_DIR/pg/primary, …/replica, …/replica2   data directories (owned by postgres)
#   $INFRA_DIR/pg/primary.log, …/replica.log, …    server logs (outside the data directories,
#                                                  so the replica's base backup skips them)
#   $RUN_DIR/pg                                    unix sockets (short path; we use TCP anyway)

PG_PRIMARY_PORT=${HEXRIDE_PG_PRIMARY_PORT:-55432}
PG_REPLICA_PORT=${HEXRIDE_PG_REPLICA_PORT:-55433}
PG_REPLICA2_PORT=${HEXRIDE_PG_REPLICA2_PORT:-55434}
PG_DB=hexride
PG_REPLICAS=(replica replica2)
PG_ROOT=$INFRA_DIR/pg
PG_SOCK_DIR=$RUN_DIR/pg
PG_BIN= # set by pg_find_bin

pg_components() { echo pg-primary pg-replica pg-replica2; }

pg_env() {
    echo "export TEST_PG_PRIMARY_URL=postgres://postgres@127.0.0.1:$PG_PRIMARY_PORT/$PG_DB"
    echo "export TEST_PG_REPLICA_URL=postgres://postgres@127.0.0.1:$PG_REPLICA_PORT/$PG_DB"
    echo "export TEST_PG_REPLICA2_URL=postgres://postgres@127.0.0.1:$PG_REPLICA2_PORT/$PG_DB"
}

# --- names and paths -------------------------------------------------------------------------

pg_role() {
    case $1 in
        pg-primary) echo primary ;;
        pg-replica) echo replica ;;
        pg-replica2) echo replica2 ;;
        *) die "unknown PostgreSQL component: $1" ;;
    esac
}
pg_port() {
    case $1 in
        primary) echo "$PG_PRIMARY_PORT" ;;
        replica) echo "$PG_REPLICA_PORT" ;;
        replica2) echo "$PG_REPLICA2_PORT" ;;
    esac
}
# pg_slot REPLICA: the primary's replication slot for REPLICA (hexride_replica, …_replica2).
pg_slot() { echo "hexride_$1"; }
pg_dir() { echo "$PG_ROOT/$1"; }
pg_logfile() { echo "$PG_ROOT/$(pg_role "$1").log"; }

# --- binaries and directories ----------------------------------------------------------------

# pg_find_bin: the bin directory of the newest installed PostgreSQL. The versioned directory,
# not /usr/local/bin or /usr/bin, which may hold wrappers. HEXRIDE_PG_BIN overrides.
pg_find_bin() {
    [ -n "$PG_BIN" ] && return 0
    local dir
    for dir in ${HEXRIDE_PG_BIN:-$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV)}; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/pg_basebackup" ] &&
            [ -x "$dir/psql" ] && [ -x "$dir/pg_isready" ]; then
            PG_BIN=$dir
            return 0
        fi
    done
    return 1
}

pg_ensure_bin() {
    if [ -n "${HEXRIDE_PG_BIN:-}" ]; then
        pg_find_bin || die "HEXRIDE_PG_BIN=$HEXRIDE_PG_BIN lacks initdb, pg_ctl, pg_basebackup, psql or pg_isready"
    elif ! pg_find_bin; then
        apt_install postgresql # Debian 12: PostgreSQL 15
        pg_find_bin || die "no PostgreSQL binaries under /usr/lib/postgresql/*/bin"
    fi
    ensure_system_user postgres
}

pg_prepare_dirs() {
    mkdir -p "$PG_ROOT" "$PG_SOCK_DIR"
    if is_root; then
        chown postgres: "$PG_ROOT" "$PG_SOCK_DIR"
        as_user postgres test -w "$PG_ROOT" || die "user postgres cannot write $PG_ROOT:" \
            "$(closed_ancestor postgres "$PG_ROOT") is closed to it; set INFRA_DIR elsewhere"
    fi
}

# --- probes ----------------------------------------------------------------------------------

# pg_sql PORT SQL [DB]: run one statement as postgres over TCP; prints bare tuples.
pg_sql() {
    PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$1" -U postgres -d "${3:-postgres}" -c "$2"
}

pg_ready() {
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$(pg_port "$1")" -U postgres -d postgres -t 2
}
pg_running() { [ -n "$(procs_in_dir "$(pg_dir "$1")")" ]; }
pg_stopped() { ! pg_running "$1"; }
pg_is_up() { pg_running "$1" && pg_find_bin && pg_ready "$1"; }

# pg_streaming REPLICA: it is in recovery, the primary streams to it through its slot, and
# the hexride database has reached it.
pg_streaming() {
    local n port
    port=$(pg_port "$1")
    [ "$(pg_sql "$port" "SELECT pg_is_in_recovery()" 2>/dev/null)" = t ] || return 1
    n=$(pg_sql "$PG_PRIMARY_PORT" "SELECT count(*) FROM pg_stat_replication r
        JOIN pg_replication_slots s ON s.active_pid = r.pid
        WHERE s.slot_name = '$(pg_slot "$1")' AND r.state = 'streaming'" 2>/dev/null) || return 1
    [ "${n:-0}" -ge 1 ] || return 1
    pg_sql "$port" "SELECT 1" "$PG_DB" >/dev/null 2>&1
}

# pg_wait_healthy: wait until each running replica streams from the running primary.
pg_wait_healthy() {
    local replica
    pg_running primary || return 0
    for replica in "${PG_REPLICAS[@]}"; do
        pg_running "$replica" || continue
        wait_for "$INFRA_TIMEOUT" pg_streaming "$replica" || {
            show_log "$(pg_logfile "pg-$replica")"
            die "pg-$replica: not streaming from the primary after ${INFRA_TIMEOUT}s"
        }
    done
}

# --- creating data directories ---------------------------------------------------------------
# Both are built in DIR.init and renamed into place, so an interrupted run leaves no
# half-made data directory behind.

pg_init_primary() {
    local dir tmp
    dir=$(pg_dir primary)
    tmp=$dir.init
    log "pg-primary: initdb $dir"
    rm -rf "$tmp"
    as_user postgres "$PG_BIN/initdb" -D "$tmp" -A trust -U postgres -E UTF8 --locale=C.UTF-8 \
        --no-sync >/dev/null
    as_user postgres tee -a "$tmp/postgresql.conf" >/dev/null <<CONF

# --- hexride test infrastructure (scripts/infra.sh) ---
listen_addresses = '127.0.0.1'
port = $PG_PRIMARY_PORT
unix_socket_directories = '$PG_SOCK_DIR'
cluster_name = 'hexride-primary'
max_connections = 300
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
wal_retrieve_retry_interval = '1s'
# Test data only: skip flushes. Commits keep their default (synchronous) semantics.
fsync = off
full_page_writes = off
timezone = 'UTC'
log_timezone = 'UTC'
CONF
    as_user postgres tee "$tmp/pg_hba.conf" >/dev/null <<HBA
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 trust
local   replication  all                 trust
host    all          all   127.0.0.1/32  trust
host    replication  all   127.0.0.1/32  trust
HBA
    # A replica cloned from an earlier primary cannot follow this one.
    local replica
    for replica in "${PG_REPLICAS[@]}"; do
        [ -d "$(pg_dir "$replica")" ] || continue
        pg_stop_server "$replica"
        log "pg-$replica: removing $(pg_dir "$replica"), a clone of an earlier primary"
        rm -rf "$(pg_dir "$replica")"
    done
    mv "$tmp" "$dir"
}

# pg_init_replica REPLICA: a base backup of the primary, streaming through its own slot.
pg_init_replica() {
    local replica=$1 dir tmp active slot
    dir=$(pg_dir "$replica")
    tmp=$dir.init
    slot=$(pg_slot "$replica")
    pg_is_up primary || die "pg-$replica: the primary must be up to clone it; run: scripts/infra.sh up"
    active=$(pg_sql "$PG_PRIMARY_PORT" \
        "SELECT active FROM pg_replication_slots WHERE slot_name = '$slot'")
    case $active in
        t) die "pg-$replica: replication slot $slot is in use by another standby" ;;
        f)
            log "pg-$replica: dropping the stale replication slot $slot"
            pg_sql "$PG_PRIMARY_PORT" "SELECT pg_drop_replication_slot('$slot')" >/dev/null
            ;;
    esac
    log "pg-$replica: pg_basebackup into $dir"
    rm -rf "$tmp"
    as_user postgres "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U postgres \
        -D "$tmp" -R -X stream -c fast -C -S "$slot" --no-sync
    # The base backup copied the primary's postgresql.conf; the last setting wins.
    as_user postgres tee -a "$tmp/postgresql.conf" >/dev/null <<CONF

# --- replica overrides (scripts/infra.sh) ---
port = $(pg_port "$replica")
cluster_name = 'hexride-$replica'
CONF
    mv "$tmp" "$dir"
}

# --- starting and stopping -------------------------------------------------------------------

# pg_start_server ROLE: start an existing data directory unless it already runs.
pg_start_server() {
    local role=$1 dir port logfile
    dir=$(pg_dir "$role")
    port=$(pg_port "$role")
    logfile=$(pg_logfile "pg-$role")
    if pg_running "$role"; then
        # Alive (perhaps still starting or recovering): wait until it accepts connections.
        wait_for "$INFRA_TIMEOUT" pg_ready "$role" || {
            show_log "$logfile"
            die "pg-$role: running but not accepting connections on port $port"
        }
        return 0
    fi
    ! port_open "$port" || die "pg-$role: port $port is taken by another process (set HEXRIDE_PG_${role^^}_PORT)"
    # Nothing runs in the directory and nothing listens on the port, so postmaster.pid and
    # the socket lock file are stale (left by a killed server). Their PID may be a zombie or
    # reused, and the postmaster would refuse to start while that PID looks alive.
    rm -f "$dir/postmaster.pid" "$PG_SOCK_DIR/.s.PGSQL.$port" "$PG_SOCK_DIR/.s.PGSQL.$port.lock"
    if [ "$role" != primary ]; then
        # Follow the primary's current port, and recreate the slot if it went missing.
        as_user postgres sed -i \
            "/^primary_conninfo/s/port=[0-9]*/port=$PG_PRIMARY_PORT/" "$dir/postgresql.auto.conf"
        if pg_is_up primary; then
            pg_sql "$PG_PRIMARY_PORT" "SELECT pg_create_physical_replication_slot('$(pg_slot "$role")', true)
                WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$(pg_slot "$role")')" >/dev/null
        else
            log "pg-$role: the primary is down; the replica streams once it is up"
        fi
    fi
    log "pg-$role: starting on 127.0.0.1:$port"
    as_user postgres "$PG_BIN/pg_ctl" -D "$dir" -l "$logfile" -w -t "$INFRA_TIMEOUT" \
        -o "-p $port -k $PG_SOCK_DIR" start >/dev/null || {
        show_log "$logfile"
        die "pg-$role: failed to start"
    }
}

pg_start_primary() {
    local dir
    dir=$(pg_dir primary)
    [ -f "$dir/PG_VERSION" ] || [ ! -e "$dir" ] || die "$dir is not a data directory; run: scripts/infra.sh down --purge"
    [ -e "$dir" ] || pg_init_primary
    pg_start_server primary
    if [ "$(pg_sql "$PG_PRIMARY_PORT" "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
        log "pg-primary: creating database $PG_DB"
        pg_sql "$PG_PRIMARY_PORT" "CREATE DATABASE $PG_DB" >/dev/null
    fi
}

# pg_start_replica REPLICA
pg_start_replica() {
    local dir
    dir=$(pg_dir "$1")
    [ -f "$dir/PG_VERSION" ] || [ ! -e "$dir" ] || die "$dir is not a data directory; run: scripts/infra.sh down --purge"
    [ -e "$dir" ] || pg_init_replica "$1"
    pg_start_server "$1"
}

# pg_stop_server ROLE: fast shutdown; no-op when it is not running.
pg_stop_server() {
    local role=$1 dir pid
    dir=$(pg_dir "$role")
    pg_running "$role" || return 0
    log "pg-$role: stopping"
    pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null || true)
    if pid_in_dir "$pid" "$dir"; then
        pg_find_bin || die "no PostgreSQL binaries to stop pg-$role with"
        as_user postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -w -t "$INFRA_TIMEOUT" stop >/dev/null
    fi
    # Without a postmaster (it was killed) its children exit by themselves; wait for them.
    pg_wait_stopped "$role"
}

# pg_wait_stopped ROLE: wait until no process of the server is left; SIGKILL stragglers.
pg_wait_stopped() {
    local dir
    dir=$(pg_dir "$1")
    wait_for 10 pg_stopped "$1" && return 0
    log "pg-$1: SIGKILL leftover processes"
    procs_in_dir "$dir" | xargs -r kill -KILL
    wait_for 5 pg_stopped "$1" || die "pg-$1: processes still running in $dir"
}

# --- the service interface -------------------------------------------------------------------

pg_up() {
    pg_ensure_bin
    pg_prepare_dirs
    pg_start_primary
    local replica
    for replica in "${PG_REPLICAS[@]}"; do pg_start_replica "$replica"; done
    pg_wait_healthy
}

pg_down() {
    local replica
    for replica in "${PG_REPLICAS[@]}"; do pg_stop_server "$replica"; done
    pg_stop_server primary
}

pg_start() {
    local role
    role=$(pg_role "$1")
    pg_ensure_bin
    pg_prepare_dirs
    if [ "$role" = primary ]; then pg_start_primary; else pg_start_replica "$role"; fi
    pg_wait_healthy
}

pg_stop() { pg_stop_server "$(pg_role "$1")"; }

# pg_kill COMPONENT: SIGKILL the postmaster named in postmaster.pid, as a crash would, then
# wait until its children have noticed and exited (so that `start` finds the port and the
# shared memory free).
pg_kill() {
    local role dir pid
    role=$(pg_role "$1")
    dir=$(pg_dir "$role")
    pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null || true)
    if ! pid_in_dir "$pid" "$dir"; then
        log "$1: not running"
        return 0
    fi
    log "$1: SIGKILL postmaster $pid"
    kill -KILL "$pid"
    pg_wait_stopped "$role"
}

# pg_status: one line per component; fails when one is not up.
pg_status() {
    local role port state detail rc=0
    for role in primary "${PG_REPLICAS[@]}"; do
        port=$(pg_port "$role")
        detail=
        if pg_is_up "$role"; then
            state=up
            detail="pid=$(head -n 1 "$(pg_dir "$role")/postmaster.pid")"
            if [ "$role" = primary ]; then
                detail+=" standbys=$(pg_sql "$port" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'" 2>/dev/null || echo '?')"
            else
                detail+=" $(pg_sql "$port" "SELECT 'recovery=' || pg_is_in_recovery()
                    || ' wal_receiver=' || coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')
                    || ' apply_delay=' || current_setting('recovery_min_apply_delay')" 2>/dev/null || echo '?')"
            fi
        elif pg_running "$role"; then
            state=starting
            rc=1
        else
            state=down
            rc=1
            if port_open "$port"; then detail="(port taken by another process)"; fi
        fi
        printf '%-16s %-9s 127.0.0.1:%-6s %s\n' "pg-$role" "$state" "$port" "$detail"
    done
    return $rc
}

# pg_lag MILLISECONDS [COMPONENT]: delay replay on every replica, or on COMPONENT only (0
# resets), and wait until it applies.
pg_lag() {
    local ms=$1 delay replica replicas=("${PG_REPLICAS[@]}") port
    [ -z "${2:-}" ] || replicas=("$(pg_role "$2")")
    for replica in "${replicas[@]}"; do
        [ "$replica" != primary ] || die "pg-primary has no replay to delay"
        port=$(pg_port "$replica")
        pg_is_up "$replica" || die "pg-$replica is not up"
        if [ "$ms" -eq 0 ]; then
            pg_sql "$port" "ALTER SYSTEM RESET recovery_min_apply_delay" >/dev/null
        else
            if ((ms % 1000 == 0)); then delay="$((ms / 1000))s"; else delay="${ms}ms"; fi
            pg_sql "$port" "ALTER SYSTEM SET recovery_min_apply_delay = '$delay'" >/dev/null
        fi
        # ALTER SYSTEM cannot share a statement (or transaction) with anything else.
        pg_sql "$port" "SELECT pg_reload_conf()" >/dev/null
        wait_for 10 pg_lag_is "$port" "$ms" || die "pg-$replica: recovery_min_apply_delay did not change"
        log "pg-$replica: recovery_min_apply_delay = $(pg_sql "$port" "SHOW recovery_min_apply_delay")"
    done
}
pg_lag_is() {
    [ "$(pg_sql "$1" "SELECT setting FROM pg_settings WHERE name = 'recovery_min_apply_delay'" 2>/dev/null)" = "$2" ]
}
