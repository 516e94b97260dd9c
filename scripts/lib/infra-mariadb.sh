# shellcheck shell=bash
# MariaDB for scripts/infra.sh: a primary and a read-only replica that follows it by GTID,
# run from the installed Debian binaries as the mysql user. Sourced, not run; see the service
# interface described in scripts/infra.sh. Never the system MariaDB on port 3306: each server
# gets its own generated defaults file, passed as the first option, so /etc/mysql never applies.
#
#   $INFRA_DIR/mariadb/primary, …/replica          data directories (owned by mysql)
#   $INFRA_DIR/mariadb/primary.cnf, …/replica.cnf  defaults files (rewritten on every start)
#   $INFRA_DIR/mariadb/primary.log, …/replica.log  server logs (outside the data directories)
#   $RUN_DIR/mariadb                               unix sockets and pid files (short path)
#
# The script administers both servers as root@127.0.0.1 (no password; made by the bootstrap
# on each server, so never replicated); clients use the hexride users. Replication: a new
# replica starts from an empty GTID position and fetches the primary's binlog from its first
# event, the one that created the users and the database. Both data directories come from
# the bootstrap, which writes no binlog, so both begin with empty GTID state and
# gtid_strict_mode holds. The primary must therefore keep its whole binlog: never purge it
# or set an expiry.

MDB_PRIMARY_PORT=${HEXRIDE_MARIADB_PRIMARY_PORT:-53306}
MDB_REPLICA_PORT=${HEXRIDE_MARIADB_REPLICA_PORT:-53307}
MDB_BASEDIR=${HEXRIDE_MARIADB_BASEDIR:-/usr}
MDB_DB=hexride
MDB_REPL_PASSWORD=hexride_repl
MDB_ROOT=$INFRA_DIR/mariadb
MDB_SOCK_DIR=$RUN_DIR/mariadb
MDB_SERVER= MDB_INSTALL_DB= MDB_CLIENT= # set by mariadb_find_bin
MDB_LAUNCHED=0 MDB_DIED=                # set by mariadb_start_server for mariadb_started

mariadb_components() { echo mariadb-primary mariadb-replica; }

mariadb_env() {
    local role port
    for role in primary replica; do
        port=$(mariadb_port "$role")
        echo "export TEST_MARIADB_${role^^}_URL=mysql://hexride:hexride@127.0.0.1:$port/$MDB_DB"
    done
    for role in primary replica; do
        port=$(mariadb_port "$role")
        echo "export TEST_MARIADB_${role^^}_ADMIN_URL=mysql://hexride_admin:hexride_admin@127.0.0.1:$port/$MDB_DB"
    done
}

# --- names and paths -------------------------------------------------------------------------

mariadb_role() {
    case $1 in
        mariadb-primary) echo primary ;;
        mariadb-replica) echo replica ;;
        *) die "unknown MariaDB component: $1" ;;
    esac
}
mariadb_port() { if [ "$1" = primary ]; then echo "$MDB_PRIMARY_PORT"; else echo "$MDB_REPLICA_PORT"; fi; }
mariadb_dir() { echo "$MDB_ROOT/$1"; }
mariadb_cnf() { echo "$MDB_ROOT/$1.cnf"; }
mariadb_sock() { echo "$MDB_SOCK_DIR/$1.sock"; }
mariadb_pidfile() { echo "$MDB_SOCK_DIR/$1.pid"; }
mariadb_logfile() { echo "$MDB_ROOT/$(mariadb_role "$1").log"; }

# --- binaries and directories ----------------------------------------------------------------

# mariadb_find_bin: mariadbd, mariadb-install-db and the mariadb client of one installation
# (Debian: /usr/sbin/mariadbd, /usr/bin/…). HEXRIDE_MARIADB_BASEDIR names another one.
mariadb_find_bin() {
    [ -n "$MDB_SERVER" ] && return 0
    local f server= install= client=
    for f in "$MDB_BASEDIR/sbin/mariadbd" "$MDB_BASEDIR/bin/mariadbd"; do
        if [ -x "$f" ]; then server=$f && break; fi
    done
    for f in "$MDB_BASEDIR/bin/mariadb-install-db" "$MDB_BASEDIR/scripts/mariadb-install-db"; do
        if [ -x "$f" ]; then install=$f && break; fi
    done
    [ -x "$MDB_BASEDIR/bin/mariadb" ] && client=$MDB_BASEDIR/bin/mariadb
    [ -n "$server" ] && [ -n "$install" ] && [ -n "$client" ] || return 1
    MDB_SERVER=$server MDB_INSTALL_DB=$install MDB_CLIENT=$client
}

mariadb_ensure_bin() {
    if ! mariadb_find_bin; then
        [ -z "${HEXRIDE_MARIADB_BASEDIR:-}" ] ||
            die "HEXRIDE_MARIADB_BASEDIR=$MDB_BASEDIR lacks sbin/mariadbd, bin/mariadb-install-db or bin/mariadb"
        apt_install mariadb-server mariadb-client # Debian 12: MariaDB 10.11
        mariadb_find_bin || die "no mariadbd, mariadb-install-db or mariadb under $MDB_BASEDIR"
    fi
    ensure_system_user mysql
}

mariadb_prepare_dirs() {
    mkdir -p "$MDB_ROOT" "$MDB_SOCK_DIR"
    if is_root; then
        chown mysql: "$MDB_ROOT" "$MDB_SOCK_DIR"
        as_user mysql test -w "$MDB_ROOT" || die "user mysql cannot write $MDB_ROOT:" \
            "$(closed_ancestor mysql "$MDB_ROOT") is closed to it; set INFRA_DIR elsewhere"
    fi
}

# mariadb_write_cnf ROLE: the server's whole configuration. Rewritten on every start so that
# a changed port applies to an existing data directory.
mariadb_write_cnf() {
    local role=$1 id=1 replica= pool=2G redo=1G
    if [ "$role" = replica ]; then
        id=2 pool=256M redo=256M
        replica="read-only = ON
# Writes made on the replica itself would get GTIDs of server 2 and break gtid_strict_mode;
# only the SQL thread and READ_ONLY ADMIN holders (root, hexride_admin) can write here.
relay-log = relay-bin
relay-log-index = relay-bin.index
relay-log-recovery = ON"
    fi
    as_user mysql tee "$(mariadb_cnf "$role")" >/dev/null <<CNF
# Generated by scripts/infra.sh on every start; edits are lost.
[mysqld]
basedir = $MDB_BASEDIR
datadir = $(mariadb_dir "$role")
socket = $(mariadb_sock "$role")
pid-file = $(mariadb_pidfile "$role")
log-error = $(mariadb_logfile "mariadb-$role")
bind-address = 127.0.0.1
port = $(mariadb_port "$role")
skip-name-resolve
max-connections = 300
server-id = $id
# Fixed names: the defaults derive them from the host name.
log-bin = mariadb-bin
log-bin-index = mariadb-bin.index
binlog-format = ROW
gtid-strict-mode = ON
log-slave-updates = ON
slave-net-timeout = 10
character-set-server = utf8mb4
default-time-zone = '+00:00'
# Test data only: no flush per commit. A SIGKILLed server loses nothing (the kernel still
# holds its writes); only a machine crash would.
innodb-flush-log-at-trx-commit = 2
sync-binlog = 0
# The primary holds the query-plan suite's million riders (tests/tests/query_plans.rs): their
# working set fits in the buffer pool, and a redo log this size keeps the bulk fill from
# stalling on checkpoints. Index builds sort in memory. The replica only replays.
innodb-buffer-pool-size = $pool
innodb-log-file-size = $redo
innodb-sort-buffer-size = 64M
$replica
CNF
}

# --- probes ----------------------------------------------------------------------------------

# mariadb_sql ROLE SQL [CLIENT-OPTION...]: run SQL as root (no password, from 127.0.0.1 only)
# over TCP; prints bare rows.
mariadb_sql() {
    local role=$1 sql=$2
    shift 2
    "$MDB_CLIENT" --no-defaults --connect-timeout=3 -h 127.0.0.1 -P "$(mariadb_port "$role")" \
        -u root -N -B "$@" -e "$sql"
}

mariadb_pid() { head -n 1 "$(mariadb_pidfile "$1")" 2>/dev/null || true; }
mariadb_running() { [ -n "$(procs_in_dir "$(mariadb_dir "$1")")" ]; }
mariadb_stopped() { ! mariadb_running "$1" && ! port_open "$(mariadb_port "$1")"; }
mariadb_ready() { mariadb_sql "$1" "SELECT 1" >/dev/null 2>&1; }
mariadb_is_up() { mariadb_running "$1" && mariadb_find_bin && mariadb_ready "$1"; }

# mariadb_slave_status: SHOW SLAVE STATUS of the replica as NAME=VALUE lines.
mariadb_slave_status() {
    mariadb_sql replica "SHOW SLAVE STATUS" --column-names -E 2>/dev/null | sed -n 's/^ *\([A-Za-z_]*\): \(.*\)$/\1=\2/p'
}
# mariadb_slave_field STATUS NAME: one field of mariadb_slave_status output.
mariadb_slave_field() { sed -n "s/^$2=//p" <<<"$1"; }

# mariadb_replicating: both replication threads run, and the users and the database have
# reached the replica (the application user can log in there).
mariadb_replicating() {
    local st
    st=$(mariadb_slave_status) || return 1
    [ "$(mariadb_slave_field "$st" Slave_IO_Running)" = Yes ] || return 1
    [ "$(mariadb_slave_field "$st" Slave_SQL_Running)" = Yes ] || return 1
    "$MDB_CLIENT" --no-defaults --connect-timeout=3 -h 127.0.0.1 -P "$MDB_REPLICA_PORT" \
        -u hexride -phexride -N -B -e "SELECT 1" "$MDB_DB" >/dev/null 2>&1
}

# mariadb_caught_up: the replica has applied everything the primary had written when asked
# (MASTER_GTID_WAIT with timeout 0 only checks), or it applies with a delay (`lag`), which
# it then cannot have.
mariadb_caught_up() {
    local pos st
    st=$(mariadb_slave_status) || return 1
    [ "$(mariadb_slave_field "$st" SQL_Delay)" = 0 ] || return 0
    pos=$(mariadb_sql primary "SELECT @@gtid_binlog_pos" 2>/dev/null) || return 1
    [ -n "$pos" ] || return 0
    [ "$(mariadb_sql replica "SELECT MASTER_GTID_WAIT('$pos', 0)" 2>/dev/null)" = 0 ]
}

# mariadb_wait_healthy: when both servers run, wait until the replica replicates and has
# caught up (after a restart of either, a test then reads what was written before).
mariadb_wait_healthy() {
    mariadb_running primary && mariadb_running replica || return 0
    wait_for "$INFRA_TIMEOUT" mariadb_replicating || {
        show_log "$(mariadb_logfile mariadb-replica)"
        mariadb_slave_status | grep -E '^(Slave_IO_Running|Slave_SQL_Running|Last_IO_Error|Last_SQL_Error)=' >&2 || true
        die "mariadb-replica: not replicating from the primary after ${INFRA_TIMEOUT}s"
    }
    wait_for "$INFRA_TIMEOUT" mariadb_caught_up ||
        die "mariadb-replica: replicating, but not caught up with the primary after ${INFRA_TIMEOUT}s" \
            "(primary $(mariadb_sql primary "SELECT @@gtid_binlog_pos" 2>/dev/null)," \
            "replica $(mariadb_sql replica "SELECT @@gtid_slave_pos" 2>/dev/null))"
}

# --- creating data directories ---------------------------------------------------------------
# Each is bootstrapped in DIR.init and renamed into place, so an interrupted run leaves no
# half-made data directory behind. The bootstrap writes no binlog.

mariadb_install() {
    local role=$1 dir tmp
    dir=$(mariadb_dir "$role")
    tmp=$dir.init
    log "mariadb-$role: mariadb-install-db $dir"
    rm -rf "$tmp"
    mariadb_write_cnf "$role"
    as_user mysql "$MDB_INSTALL_DB" --defaults-file="$(mariadb_cnf "$role")" --datadir="$tmp" \
        --basedir="$MDB_BASEDIR" --auth-root-authentication-method=normal --skip-test-db \
        --skip-name-resolve >"$tmp.log" 2>&1 || {
        show_log "$tmp.log"
        die "mariadb-$role: mariadb-install-db failed"
    }
    rm -f "$tmp.log"
    mv "$tmp" "$dir"
}

mariadb_init_primary() {
    # A replica that followed an earlier primary would find GTIDs this one never wrote.
    if [ -d "$(mariadb_dir replica)" ]; then
        mariadb_stop_server replica
        log "mariadb-replica: removing $(mariadb_dir replica), a replica of an earlier primary"
        rm -rf "$(mariadb_dir replica)"
    fi
    mariadb_install primary
}

# mariadb_setup_primary: the users and the database, created once (each statement is a
# binlog event the replica replays; re-running them on every start would only add events).
# The application user gets no READ_ONLY ADMIN (which ALL PRIVILEGES and SUPER include in
# 10.11): with it a write routed to the replica would succeed there and break replication.
# SLAVE MONITOR is for SHOW SLAVE STATUS, BINLOG MONITOR for SHOW MASTER STATUS; reading
# @@gtid_binlog_pos, @@gtid_slave_pos, @@last_gtid and MASTER_GTID_WAIT need no privilege.
mariadb_setup_primary() {
    local n
    n=$(mariadb_sql primary "SELECT (SELECT count(*) FROM mysql.user WHERE (user, host) IN
            (('repl', '127.0.0.1'), ('hexride', '127.0.0.1'), ('hexride', 'localhost'),
             ('hexride_admin', '127.0.0.1')))
        + (SELECT count(*) FROM information_schema.schemata WHERE schema_name = '$MDB_DB')") ||
        die "mariadb-primary: cannot read its users"
    [ "$n" = 5 ] && return 0
    log "mariadb-primary: creating the users and database $MDB_DB"
    mariadb_sql primary "
        CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY '$MDB_REPL_PASSWORD';
        GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1';
        CREATE USER IF NOT EXISTS 'hexride'@'127.0.0.1' IDENTIFIED BY 'hexride';
        CREATE USER IF NOT EXISTS 'hexride'@'localhost' IDENTIFIED BY 'hexride';
        GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES,
            CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW,
            SLAVE MONITOR, BINLOG MONITOR
            ON *.* TO 'hexride'@'127.0.0.1', 'hexride'@'localhost';
        CREATE USER IF NOT EXISTS 'hexride_admin'@'127.0.0.1' IDENTIFIED BY 'hexride_admin';
        GRANT ALL PRIVILEGES ON *.* TO 'hexride_admin'@'127.0.0.1' WITH GRANT OPTION;
        CREATE DATABASE IF NOT EXISTS $MDB_DB CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;" ||
        die "mariadb-primary: creating the users failed"
}

# mariadb_setup_replica: follow the primary by GTID, from an empty position on a new replica
# (it then replays the primary's whole binlog), from gtid_slave_pos after that. The settings
# live in the replica's master.info, so a restart resumes by itself; only a changed primary
# port needs a new CHANGE MASTER.
mariadb_setup_replica() {
    local st
    st=$(mariadb_slave_status)
    if [ -z "$st" ]; then
        log "mariadb-replica: following the primary at 127.0.0.1:$MDB_PRIMARY_PORT by GTID"
    elif [ "$(mariadb_slave_field "$st" Master_Port)" != "$MDB_PRIMARY_PORT" ]; then
        log "mariadb-replica: following the primary on its new port $MDB_PRIMARY_PORT"
        mariadb_sql replica "STOP SLAVE" || die "mariadb-replica: STOP SLAVE failed"
    else
        return 0
    fi
    mariadb_sql replica "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$MDB_PRIMARY_PORT,
        MASTER_USER='repl', MASTER_PASSWORD='$MDB_REPL_PASSWORD', MASTER_USE_GTID=slave_pos,
        MASTER_CONNECT_RETRY=1; START SLAVE" || die "mariadb-replica: CHANGE MASTER failed"
}

# --- starting and stopping -------------------------------------------------------------------

# mariadb_started ROLE: true once the server accepts connections, or once it has died
# (then MDB_DIED is set), so that a server that cannot start fails at once, not after the
# whole timeout.
mariadb_started() {
    if mariadb_ready "$1"; then return 0; fi
    if ((SECONDS > MDB_LAUNCHED + 2)) && ! mariadb_running "$1"; then
        MDB_DIED=1
        return 0
    fi
    return 1
}

# mariadb_start_server ROLE: start an existing data directory unless it already runs.
mariadb_start_server() {
    local role=$1 dir port logfile
    dir=$(mariadb_dir "$role")
    port=$(mariadb_port "$role")
    logfile=$(mariadb_logfile "mariadb-$role")
    if mariadb_running "$role"; then
        # Alive (perhaps still starting or in crash recovery): wait until it accepts connections.
        wait_for "$INFRA_TIMEOUT" mariadb_ready "$role" || {
            show_log "$logfile"
            die "mariadb-$role: running but not accepting connections on port $port"
        }
        return 0
    fi
    ! port_open "$port" || die "mariadb-$role: port $port is taken by another process (set HEXRIDE_MARIADB_${role^^}_PORT)"
    mariadb_write_cnf "$role"
    # Nothing runs in the directory: the pid file is stale (left by a killed server). The
    # server replaces a stale socket file itself.
    rm -f "$(mariadb_pidfile "$role")"
    as_user mysql touch "$logfile"
    log "mariadb-$role: starting on 127.0.0.1:$port"
    # mariadbd does not daemonize: setsid -f detaches it (runuser returns at once), and its
    # stdout/stderr (messages from before it opens log-error) go to the log too. It asks for
    # more open files than a typical hard limit and, refused, keeps the soft one (1024 after
    # runuser's PAM session, which shrinks its table cache below what one database per test
    # needs), so the soft limit is raised to the hard one first, as the mysql user.
    # shellcheck disable=SC2016 # expanded by that inner shell
    as_user mysql bash -c 'ulimit -S -n "$(ulimit -H -n)" 2>/dev/null; exec setsid -f "$@"' \
        mariadbd "$MDB_SERVER" --defaults-file="$(mariadb_cnf "$role")" </dev/null >>"$logfile" 2>&1
    MDB_LAUNCHED=$SECONDS MDB_DIED=
    wait_for "$INFRA_TIMEOUT" mariadb_started "$role" && [ -z "$MDB_DIED" ] || {
        show_log "$logfile"
        die "mariadb-$role: failed to start (not accepting connections on port $port)"
    }
}

mariadb_check_dir() {
    local dir
    dir=$(mariadb_dir "$1")
    [ -d "$dir/mysql" ] || [ ! -e "$dir" ] || die "$dir is not a data directory; run: scripts/infra.sh down --purge"
}

mariadb_start_primary() {
    mariadb_check_dir primary
    [ -e "$(mariadb_dir primary)" ] || mariadb_init_primary
    mariadb_start_server primary
    mariadb_setup_primary
}

mariadb_start_replica() {
    mariadb_check_dir replica
    [ -e "$(mariadb_dir replica)" ] || mariadb_install replica
    mariadb_start_server replica
    mariadb_setup_replica
    if ! mariadb_is_up primary; then
        log "mariadb-replica: the primary is down; the replica catches up once it is up"
    fi
}

# mariadb_stop_server ROLE: SIGTERM, a normal shutdown; no-op when it is not running.
mariadb_stop_server() {
    local role=$1 dir pid
    dir=$(mariadb_dir "$role")
    mariadb_running "$role" || return 0
    log "mariadb-$role: stopping"
    pid=$(mariadb_pid "$role")
    if pid_in_dir "$pid" "$dir"; then kill -TERM "$pid"; fi
    mariadb_wait_stopped "$role" "$INFRA_TIMEOUT"
}

# mariadb_wait_stopped ROLE SECONDS: wait until the server is gone and its port closed;
# SIGKILL it when it takes longer.
mariadb_wait_stopped() {
    local dir
    dir=$(mariadb_dir "$1")
    wait_for "$2" mariadb_stopped "$1" && return 0
    log "mariadb-$1: SIGKILL leftover processes"
    procs_in_dir "$dir" | xargs -r kill -KILL
    wait_for 5 mariadb_stopped "$1" || die "mariadb-$1: still running in $dir or port $(mariadb_port "$1") still taken"
}

# --- the service interface -------------------------------------------------------------------

mariadb_up() {
    mariadb_ensure_bin
    mariadb_prepare_dirs
    mariadb_start_primary
    mariadb_start_replica
    mariadb_wait_healthy
}

mariadb_down() {
    mariadb_stop_server replica
    mariadb_stop_server primary
}

mariadb_start() {
    local role
    role=$(mariadb_role "$1")
    mariadb_ensure_bin
    mariadb_prepare_dirs
    "mariadb_start_$role"
    mariadb_wait_healthy
}

mariadb_stop() { mariadb_stop_server "$(mariadb_role "$1")"; }

# mariadb_kill COMPONENT: SIGKILL the mariadbd named in the pid file, as a crash would, and
# wait until it is gone (a zombie counts as gone) and its port is closed. The next start
# runs InnoDB crash recovery; a replica then resumes from its gtid_slave_pos.
mariadb_kill() {
    local role dir pid
    role=$(mariadb_role "$1")
    dir=$(mariadb_dir "$role")
    pid=$(mariadb_pid "$role")
    if ! pid_in_dir "$pid" "$dir"; then
        log "$1: not running"
        return 0
    fi
    log "$1: SIGKILL mariadbd $pid"
    kill -KILL "$pid"
    mariadb_wait_stopped "$role" 10
}

# mariadb_status: one line per component; fails when one is not up.
mariadb_status() {
    local role port state detail st rc=0
    for role in primary replica; do
        port=$(mariadb_port "$role")
        detail=
        if mariadb_is_up "$role"; then
            state=up
            detail="pid=$(mariadb_pid "$role")"
            if [ "$role" = primary ]; then
                detail+=" $(mariadb_sql primary "SELECT concat('gtid_binlog_pos=', @@gtid_binlog_pos,
                    ' replicas=', (SELECT count(*) FROM information_schema.processlist
                                   WHERE command LIKE 'Binlog Dump%'))" 2>/dev/null || echo '?')"
            else
                st=$(mariadb_slave_status)
                if [ -z "$st" ]; then
                    detail+=" (not following a primary)"
                else
                    detail+=" io=$(mariadb_slave_field "$st" Slave_IO_Running)"
                    detail+=" sql=$(mariadb_slave_field "$st" Slave_SQL_Running)"
                    detail+=" behind=$(mariadb_slave_field "$st" Seconds_Behind_Master)"
                    detail+=" delay=$(mariadb_slave_field "$st" SQL_Delay)"
                    detail+=" gtid_slave_pos=$(mariadb_sql replica "SELECT @@gtid_slave_pos" 2>/dev/null || echo '?')"
                fi
            fi
        elif mariadb_running "$role"; then
            state=starting
            rc=1
        else
            state=down
            rc=1
            if port_open "$port"; then detail="(port taken by another process)"; fi
        fi
        printf '%-16s %-9s 127.0.0.1:%-6s %s\n' "mariadb-$role" "$state" "$port" "$detail"
    done
    return $rc
}

# mariadb_lag MILLISECONDS: delay applying on the replica (0 resets). MASTER_DELAY takes
# whole seconds, so the delay is rounded up; a commit becomes visible on the replica about
# that many seconds after it committed on the primary. It is kept in master.info, so it
# outlives a restart of the replica, as pg's recovery_min_apply_delay does.
mariadb_lag() {
    local ms=$1 delay st
    delay=$(((ms + 999) / 1000))
    mariadb_is_up replica || die "mariadb-replica is not up"
    mariadb_sql replica "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=$delay; START SLAVE" ||
        die "mariadb-replica: changing MASTER_DELAY failed"
    st=$(mariadb_slave_status)
    [ "$(mariadb_slave_field "$st" SQL_Delay)" = "$delay" ] || die "mariadb-replica: MASTER_DELAY did not change"
    if mariadb_is_up primary; then mariadb_wait_healthy; fi
    log "mariadb-replica: MASTER_DELAY = $delay s"
}
