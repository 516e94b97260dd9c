#!/usr/bin/env bash
# hexride's own test infrastructure: servers on 127.0.0.1 on non-default ports, with their
# data under $INFRA_DIR. It never touches the system servers on the default ports.
#
#   eval "$(scripts/infra.sh up)"     # start what is not running, export the TEST_* URLs
#   scripts/infra.sh status [SERVICE...]
#   scripts/infra.sh down [--purge]
#
# Run `scripts/infra.sh help` for every command. Idempotent: `up` on a running set is a
# no-op, `up` on stopped data directories restarts them without re-creating anything.
#
# Services live in scripts/lib/infra-<service>.sh. A service SVC provides
#   SVC_components        its component names, "SVC" or "SVC-<role>" (e.g. pg-primary)
#   SVC_up / SVC_down     start what is not running and wait until healthy / stop all, keep data
#   SVC_start C / SVC_stop C / SVC_kill C   one component (kill = SIGKILL, for fault tests)
#   SVC_status            one line per component; returns non-zero when one is not up
#   SVC_env               `export NAME=value` lines
#   SVC_logfile C         the component's log file
#   SVC_lag MS            (optional) delay replication to its replicas; 0 resets
# and keeps its data in $INFRA_DIR/SVC and its sockets in $RUN_DIR/SVC.
set -euo pipefail

SERVICES=(pg mariadb redis rediscluster kafka) # start order; `down` stops in reverse.

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
INFRA_DIR=$(realpath -m "${INFRA_DIR:-$REPO_ROOT/target/infra}")
# Unix socket paths must stay under 108 bytes, so sockets go to a short directory per INFRA_DIR.
RUN_DIR=/tmp/hexride-infra-$(printf '%s' "$INFRA_DIR" | sha256sum | cut -c1-12)
INFRA_TIMEOUT=${HEXRIDE_INFRA_TIMEOUT:-60}
STARTED_US=${EPOCHREALTIME//[.,]/}

# shellcheck source=lib/infra-common.sh
. "$SCRIPT_DIR/lib/infra-common.sh"
for svc in "${SERVICES[@]}"; do
    # shellcheck source=/dev/null
    . "$SCRIPT_DIR/lib/infra-$svc.sh"
done

usage() {
    cat <<EOF
Usage: scripts/infra.sh COMMAND [ARG]

Commands:
  up                start every component that is not running, wait until all are healthy
                    (replicas streaming), then print the env lines: eval "\$(scripts/infra.sh up)"
  down [--purge]    stop every component, keep the data (--purge: delete it too)
  purge             the same as down --purge
  status [SVC...]   one line per component (of SVC only: pg, mariadb, redis,
                    rediscluster, kafka); exit status 0 only when every one is up
  env               print the export lines (TEST_PG_PRIMARY_URL, TEST_PG_REPLICA_URL,
                    TEST_PG_REPLICA2_URL,
                    TEST_MARIADB_PRIMARY_URL, TEST_MARIADB_REPLICA_URL, TEST_MARIADB_*_ADMIN_URL,
                    TEST_REDIS_URL, TEST_REDIS_CLUSTER_URL, TEST_KAFKA_BROKERS)
  start COMPONENT   start one component (creating it if needed), wait until healthy
  stop COMPONENT    stop one component (fast shutdown)
  kill COMPONENT    SIGKILL the component's main process, as a crash would (fault tests)
  lag DELAY [SVC|C] delay replay on the replicas (of SVC only: pg, mariadb; or of one
                    replica, e.g. pg-replica2): 2 (seconds), 2s, 500ms, 1min; 0 resets
  logs COMPONENT    print the end of the component's log

Components: $(all_components)

Environment:
  INFRA_DIR                     data directory (now $INFRA_DIR)
  HEXRIDE_PG_PRIMARY_PORT       PostgreSQL primary port (55432)
  HEXRIDE_PG_REPLICA_PORT       PostgreSQL replica port (55433)
  HEXRIDE_PG_REPLICA2_PORT      PostgreSQL second replica port (55434)
  HEXRIDE_PG_BIN                PostgreSQL bin directory (newest /usr/lib/postgresql/*/bin)
  HEXRIDE_MARIADB_PRIMARY_PORT  MariaDB primary port (53306)
  HEXRIDE_MARIADB_REPLICA_PORT  MariaDB replica port (53307)
  HEXRIDE_MARIADB_BASEDIR       MariaDB installation: sbin/mariadbd, bin/mariadb-install-db,
                                bin/mariadb (/usr)
  HEXRIDE_REDIS_PORT            Redis port (56379)
  HEXRIDE_REDIS_SERVER          redis-server binary (the one on PATH)
  HEXRIDE_REDIS_CLUSTER_PORT    first of the six Redis Cluster node ports (27001-27006)
  HEXRIDE_KAFKA_PORT            Kafka-protocol broker (tansu) port (59092)
  HEXRIDE_TANSU_BIN             tansu binary (default: built once into HEXRIDE_TANSU_ROOT)
  HEXRIDE_TANSU_ROOT            where tansu is built ($HOME/.cache/hexride/tansu-0.6.0)
  HEXRIDE_INFRA_TIMEOUT         seconds to wait for a server (60)
EOF
}

all_components() {
    local svc
    for svc in "${SERVICES[@]}"; do "${svc}_components"; done | xargs
}

# service_of COMPONENT: the service that owns COMPONENT.
service_of() {
    local svc c
    for svc in "${SERVICES[@]}"; do
        for c in $("${svc}_components"); do
            if [ "$c" = "$1" ]; then
                echo "$svc"
                return 0
            fi
        done
    done
    die "unknown component '$1' (components: $(all_components))"
}

# lock: one mutating infra.sh at a time per INFRA_DIR (two concurrent `up`s would race).
# It is held on fd 9, which servers must not inherit (as_user closes it) or they would hold
# the lock for as long as they run.
lock() {
    exec 9>"$RUN_DIR.lock"
    flock -w $((INFRA_TIMEOUT * 3)) 9 || die "another scripts/infra.sh is still busy"
}

cmd_env() {
    local svc
    for svc in "${SERVICES[@]}"; do "${svc}_env"; done
}

cmd_up() {
    local svc
    lock
    mkdir -p "$INFRA_DIR" "$RUN_DIR"
    reserve_ports "$PG_PRIMARY_PORT" "$PG_REPLICA_PORT" "$PG_REPLICA2_PORT" "$MDB_PRIMARY_PORT" \
        "$MDB_REPLICA_PORT" "$REDIS_PORT" "$KAFKA_PORT"
    for svc in "${SERVICES[@]}"; do "${svc}_up"; done
    log "up after $(((${EPOCHREALTIME//[.,]/} - STARTED_US) / 1000)) ms"
    cmd_env
}

cmd_down() {
    local purge=${1:-} i
    case $purge in
        "" | --purge) ;;
        *) die "down takes only --purge" ;;
    esac
    lock
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do "${SERVICES[i]}_down"; done
    if [ -n "$purge" ]; then
        # Only what the services own, so a misdirected INFRA_DIR cannot take anything else.
        for svc in "${SERVICES[@]}"; do rm -rf "${INFRA_DIR:?}/$svc"; done
        rmdir "$INFRA_DIR" 2>/dev/null || true
        rm -rf "$RUN_DIR"
        log "purged $INFRA_DIR"
    fi
}

# cmd_status [SERVICE...]: every service's components, or only those of SERVICE...
cmd_status() {
    local svc rc=0 services=("$@")
    [ $# -gt 0 ] || services=("${SERVICES[@]}")
    for svc in "${services[@]}"; do
        declare -F "${svc}_status" >/dev/null || die "no service $svc (services: ${SERVICES[*]})"
        "${svc}_status" || rc=3
    done
    return $rc
}

# cmd_component ACTION COMPONENT: start, stop or kill one component.
cmd_component() {
    local action=$1 component=${2:-} svc
    [ -n "$component" ] || die "$action needs a component: $(all_components)"
    svc=$(service_of "$component")
    lock
    if [ "$action" = start ]; then mkdir -p "$INFRA_DIR" "$RUN_DIR"; fi
    "${svc}_${action}" "$component"
}

# cmd_lag DELAY [SERVICE|COMPONENT...]: N or Ns (seconds), Nms, Nmin; 0 resets. Without a
# target, every service that has replicas (pg, mariadb); a component is one replica.
cmd_lag() {
    local arg=${1:-} ms svc
    [[ $arg =~ ^([0-9]+)(ms|s|min)?$ ]] || die "lag needs a delay: 2, 2s, 500ms, 1min or 0"
    case ${BASH_REMATCH[2]} in
        ms) ms=$((10#${BASH_REMATCH[1]})) ;;
        min) ms=$((10#${BASH_REMATCH[1]} * 60000)) ;;
        *) ms=$((10#${BASH_REMATCH[1]} * 1000)) ;;
    esac
    shift
    local targets=("$@")
    if [ ${#targets[@]} -eq 0 ]; then
        for svc in "${SERVICES[@]}"; do
            if declare -F "${svc}_lag" >/dev/null; then targets+=("$svc"); fi
        done
    fi
    lock
    local target
    for target in "${targets[@]}"; do
        if declare -F "${target}_lag" >/dev/null; then
            "${target}_lag" "$ms"
        elif declare -F "${target}_components" >/dev/null; then
            die "$target has no replicas to lag (services with replicas: pg, mariadb)"
        else
            # One replica of a service.
            svc=$(service_of "$target")
            declare -F "${svc}_lag" >/dev/null || die "$target has no replay to delay"
            "${svc}_lag" "$ms" "$target"
        fi
    done
}

cmd_logs() {
    local component=${1:-} svc file
    [ -n "$component" ] || die "logs needs a component: $(all_components)"
    svc=$(service_of "$component")
    file=$("${svc}_logfile" "$component")
    [ -f "$file" ] || die "$component has no log yet ($file)"
    echo "==> $file"
    tail -n 50 "$file"
}

main() {
    local cmd=${1:-}
    [ $# -eq 0 ] || shift
    case $cmd in
        up) [ $# -eq 0 ] || die "up takes no arguments"; cmd_up ;;
        down) cmd_down "$@" ;;
        purge) cmd_down --purge ;;
        status) cmd_status "$@" ;;
        env) cmd_env ;;
        start | stop | kill) cmd_component "$cmd" "$@" ;;
        lag) cmd_lag "$@" ;;
        logs) cmd_logs "$@" ;;
        help | -h | --help) usage ;;
        "") usage >&2; exit 2 ;;
        *) printf 'infra: unknown command: %s\n\n' "$cmd" >&2; usage >&2; exit 2 ;;
    esac
}

main "$@"
