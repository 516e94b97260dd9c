#!/usr/bin/env bash
# hexride as a cluster on this machine: nginx in front of several API instances and a worker
# instance, on the project's PostgreSQL primary with its two streaming replicas, Redis and the
# Kafka broker (all from scripts/infra.sh, on loopback ports).
#
#   scripts/cluster.sh up              # infra, database, instances, nginx; prints the URL
#   scripts/cluster.sh status
#   scripts/cluster.sh restart api-1   # SIGTERM (drain), start again, wait until ready
#   scripts/cluster.sh kill api-2      # SIGKILL, as a crash would
#   scripts/cluster.sh load 30         # the members mix through nginx for 30 s
#   scripts/cluster.sh down [--purge]
#
# Run `scripts/cluster.sh help` for every command and setting. Every instance gets its
# settings from APP__ variables (README's configuration table); any APP__ variable set when
# you call this script reaches every instance too.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
CLUSTER_DIR=$(realpath -m "${CLUSTER_DIR:-$REPO_ROOT/target/cluster}")
# nginx's pid and temporary files: a short path every user can reach (its workers run as
# nobody when started by root).
RUN_DIR=/tmp/hexride-cluster-$(printf '%s' "$CLUSTER_DIR" | sha256sum | cut -c1-12)
PORT=${CLUSTER_PORT:-18080}
API_COUNT=${CLUSTER_API:-2}
WORKER_COUNT=${CLUSTER_WORKERS:-1}
((API_COUNT >= 1 && API_COUNT <= 19 && WORKER_COUNT >= 0 && WORKER_COUNT <= 19)) ||
    { echo "cluster: error: CLUSTER_API must be 1-19 and CLUSTER_WORKERS 0-19" >&2; exit 1; }
DATABASE=${CLUSTER_DATABASE:-hexride_cluster}
DRAIN_SECS=${CLUSTER_DRAIN_SECS:-3}
REDIS_MODE=${CLUSTER_REDIS:-single}
case $REDIS_MODE in single | cluster) ;; *) echo "cluster: error: CLUSTER_REDIS must be single or cluster" >&2; exit 1 ;; esac
TIMEOUT=${CLUSTER_TIMEOUT:-60}

# shellcheck source=lib/infra-common.sh
. "$SCRIPT_DIR/lib/infra-common.sh"
log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
    printf 'cluster: error: %s\n' "$*" >&2
    exit 1
}

usage() {
    cat <<EOF
Usage: scripts/cluster.sh COMMAND [ARG]

Commands:
  up                 start scripts/infra.sh's services, create the database, start every
                     node that is not running and nginx; print the URL
  down [--purge]     stop nginx and every node (SIGTERM, each drains); --purge also drops
                     the database, its Redis keys and forgets the secrets
  status             one line per node: pid, readiness; exit 0 only when all are ready
  start NODE         start one node and wait until it is ready
  stop NODE          SIGTERM one node and wait until it has exited (it drains first)
  restart NODE       stop, then start
  rolling-restart    restart every API node, one after another
  kill NODE          SIGKILL one node's process, as a crash would
  load [SECONDS]     the 3 reads : 1 keyed write members mix through nginx (default 20 s)
  bench [SECONDS]    on a cluster of its own (port +60, purged after): product reads, the
                     members mix and order + payment through nginx, with one API node in
                     its upstream and then with all (default 15 s each), after product
                     reads straight on api-1 as the baseline
  create-admin EMAIL an admin account, its password taken from HEXRIDE_PASSWORD
  url                print the load balancer's URL
  logs NODE          the end of a node's log (NODE may be nginx)

Nodes: $(nodes | xargs) nginx

Environment:
  CLUSTER_DIR         logs, pid files, secrets, nginx configuration (now $CLUSTER_DIR)
  CLUSTER_PORT        nginx's port on 127.0.0.1 ($PORT); api-N listens on CLUSTER_PORT+N,
                      its admin listener on CLUSTER_PORT+20+N, worker-N's on +40+N (up to
                      19 of each: two clusters need ports 60 apart)
  CLUSTER_API         API nodes ($API_COUNT)
  CLUSTER_WORKERS     worker nodes ($WORKER_COUNT)
  CLUSTER_DATABASE    database on the infra PostgreSQL ($DATABASE)
  CLUSTER_DRAIN_SECS  server.drain_secs of every node ($DRAIN_SECS; above nginx's upstream
                      keepalive_timeout of 2 s)
  CLUSTER_REDIS       single: the infra Redis (56379); cluster: the infra Redis Cluster
                      (27001-27006, redis+cluster://) ($REDIS_MODE)
  CLUSTER_TIMEOUT     seconds to wait for a node or nginx ($TIMEOUT)
  HEXRIDE_BIN         the app-server binary (default: cargo build --release, then
                      target/release/app-server)
EOF
}

# --- nodes -----------------------------------------------------------------------------------

nodes() {
    local i
    for ((i = 1; i <= API_COUNT; i++)); do echo "api-$i"; done
    for ((i = 1; i <= WORKER_COUNT; i++)); do echo "worker-$i"; done
}

check_node() {
    local n
    for n in $(nodes); do [ "$n" = "$1" ] && return 0; done
    die "unknown node '$1' (nodes: $(nodes | xargs))"
}

node_index() { echo "${1#*-}"; }
node_dir() { echo "$CLUSTER_DIR/$1"; }
node_pid() { cat "$(node_dir "$1")/pid" 2>/dev/null || true; }
api_port() { echo $((PORT + $(node_index "$1"))); }
admin_port() {
    case $1 in
        api-*) echo $((PORT + 20 + $(node_index "$1"))) ;;
        worker-*) echo $((PORT + 40 + $(node_index "$1"))) ;;
    esac
}

# node_running NODE: its process is alive (and is the one we started: it works in its dir).
node_running() {
    local pid
    pid=$(node_pid "$1")
    [ -n "$pid" ] && pid_in_dir "$pid" "$(node_dir "$1")"
}

# readiness NODE: the HTTP status of the node's /health/ready on its admin listener.
readiness() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$(admin_port "$1")/health/ready" || true
}

binary() {
    if [ -n "${HEXRIDE_BIN:-}" ]; then
        [ -x "$HEXRIDE_BIN" ] || die "HEXRIDE_BIN=$HEXRIDE_BIN is not an executable"
        echo "$HEXRIDE_BIN"
        return
    fi
    log "building app-server (release)"
    (cd "$REPO_ROOT" && cargo build -q --release -p app-server >&2)
    echo "$REPO_ROOT/target/release/app-server"
}

# secret NAME: a random secret kept in CLUSTER_DIR, the same for every node and every start.
secret() {
    local file=$CLUSTER_DIR/secrets/$1
    if [ ! -s "$file" ]; then
        mkdir -p "$CLUSTER_DIR/secrets"
        chmod 700 "$CLUSTER_DIR/secrets"
        (umask 077 && head -c 48 /dev/urandom | base64 -w0 >"$file")
    fi
    cat "$file"
}

# node_env NODE: the node's settings, as the environment app-server reads.
node_env() {
    local node=$1
    echo "APP__SERVER__ADMIN_LISTEN=127.0.0.1:$(admin_port "$node")"
    case $node in
        api-*)
            echo "APP__SERVER__ROLE=api"
            echo "APP__SERVER__LISTEN=127.0.0.1:$(api_port "$node")"
            ;;
        worker-*) echo "APP__SERVER__ROLE=worker" ;;
    esac
    echo "APP__SERVER__DRAIN_SECS=$DRAIN_SECS"
    echo "APP__SERVER__TRUSTED_PROXIES=127.0.0.1/32"
    echo "APP__DATABASE__URL=$(db_url "$TEST_PG_PRIMARY_URL")"
    local replicas
    replicas=$(db_url "$TEST_PG_REPLICA_URL")
    [ -z "${TEST_PG_REPLICA2_URL:-}" ] || replicas+=,$(db_url "$TEST_PG_REPLICA2_URL")
    echo "APP__DATABASE__REPLICA_URLS=$replicas"
    echo "APP__DATABASE__MIGRATE_ON_START=false"
    echo "APP__REDIS__URL=$(redis_url)"
    echo "APP__REDIS__KEY_PREFIX=$(redis_prefix)"
    echo "APP__KAFKA__BROKERS=$TEST_KAFKA_BROKERS"
    echo "APP__KAFKA__NAMESPACE=$DATABASE"
    echo "APP__AUTH__JWT_SECRET=$(secret jwt)"
    echo "APP__INSURER__WEBHOOK_SECRET=$(secret insurer)"
}

# db_url URL: URL with the cluster's database in place of the infra one.
db_url() { echo "${1%/*}/$DATABASE"; }
redis_prefix() { echo "$DATABASE:"; }
redis_url() {
    if [ "$REDIS_MODE" = cluster ]; then echo "$TEST_REDIS_CLUSTER_URL"; else echo "$TEST_REDIS_URL"; fi
}

# purge_redis_keys: delete the cluster's keys, on the one server or on every master.
purge_redis_keys() {
    local servers=() seed node
    if [ "$REDIS_MODE" = cluster ]; then
        seed=${TEST_REDIS_CLUSTER_URL#redis+cluster://}
        seed=${seed%%,*}
        while read -r node; do servers+=("redis://${node%@*}"); done < <(
            redis-cli -h "${seed%:*}" -p "${seed##*:}" cluster nodes | awk '$3 ~ /master/ && $3 !~ /fail/ { print $2 }')
    else
        servers=("$TEST_REDIS_URL")
    fi
    for server in "${servers[@]}"; do
        redis-cli -u "$server" --scan --pattern "*$(redis_prefix)*" |
            xargs -r -n 1 redis-cli -u "$server" del >/dev/null
    done
}

infra_env() {
    local env
    env=$("$SCRIPT_DIR/infra.sh" up) || die "scripts/infra.sh up failed"
    eval "$env"
}

ensure_database() {
    local admin exists
    admin=$(db_url "$TEST_PG_PRIMARY_URL")
    admin=${admin%/*}/postgres
    exists=$(psql -X -q -t -A "$admin" -c "select 1 from pg_database where datname = '$DATABASE'")
    if [ "$exists" != 1 ]; then
        log "creating database $DATABASE"
        psql -X -q "$admin" -c "create database $DATABASE" >/dev/null
    fi
    # The replicas replay the creation before any node reads from them.
    local replica
    for replica in "$TEST_PG_REPLICA_URL" ${TEST_PG_REPLICA2_URL:+"$TEST_PG_REPLICA2_URL"}; do
        wait_for "$TIMEOUT" psql -X -q -t -A "$(db_url "$replica")" -c "select 1" >/dev/null 2>&1 ||
            die "a replica ($replica) did not replay the creation of $DATABASE"
    done
    log "migrating $DATABASE"
    cli migrate >&2 ||
        die "migrations failed"
}

# cli ARGS…: app-server's command line on the cluster's database, with its secrets.
cli() {
    env $(node_env api-1 | grep -E '^APP__(DATABASE|AUTH|INSURER|LOG)__') "$BIN" "$@"
}

start_node() {
    local node=$1 dir pid
    dir=$(node_dir "$node")
    if node_running "$node"; then
        log "$node is already running (pid $(node_pid "$node"))"
        return 0
    fi
    mkdir -p "$dir"
    # Its own directory as cwd: pid_in_dir tells our process from a stranger with a reused pid.
    # setsid: a node outlives this script and its terminal; stdin closed, fd 9 not inherited.
    (cd "$dir" && exec env $(node_env "$node") setsid "$BIN" serve </dev/null >>"$dir/log" 2>&1 9>&-) &
    pid=$!
    echo "$pid" >"$dir/pid"
    if ! wait_for "$TIMEOUT" node_ready "$node"; then
        tail -n 30 "$dir/log" >&2
        die "$node did not become ready within ${TIMEOUT}s"
    fi
    log "$node ready (pid $pid)"
}

node_ready() {
    node_running "$1" || die "$1 exited: $(tail -n 5 "$(node_dir "$1")/log")"
    [ "$(readiness "$1")" = 200 ]
}

stop_node() {
    local node=$1 pid
    node_running "$node" || {
        log "$node is not running"
        return 0
    }
    pid=$(node_pid "$node")
    kill -TERM "$pid"
    # The drain, then up to server.shutdown_grace_secs (20) for in-flight work.
    wait_for $((DRAIN_SECS + 25)) node_gone "$node" || die "$node did not stop"
    log "$node stopped"
}

node_gone() { ! node_running "$1"; }

kill_node() {
    local node=$1
    node_running "$node" || die "$node is not running"
    kill -KILL "$(node_pid "$node")"
    wait_for 10 node_gone "$node" || die "$node survived SIGKILL"
    log "$node killed"
}

# --- nginx -----------------------------------------------------------------------------------

nginx_bin() {
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_install nginx-light || apt_install nginx
    command -v nginx || echo /usr/sbin/nginx
}

nginx_pid() { cat "$RUN_DIR/nginx.pid" 2>/dev/null || true; }
nginx_running() {
    local pid
    pid=$(nginx_pid)
    [ -n "$pid" ] && proc_alive "$pid" && grep -q nginx "/proc/$pid/cmdline" 2>/dev/null
}

# nginx_config: the shipped deploy/nginx/hexride.conf with this cluster's port and one
# upstream server line per API node, inside a main configuration that keeps every file
# nginx writes under CLUSTER_DIR and RUN_DIR.
nginx_config() {
    local servers="" i
    for ((i = 1; i <= ${LB_SERVERS:-API_COUNT}; i++)); do
        servers+="    server 127.0.0.1:$((PORT + i)) max_fails=1 fail_timeout=2s;\n"
    done
    mkdir -p "$CLUSTER_DIR/nginx" "$RUN_DIR"
    awk -v servers="$servers" -v port="$PORT" '
        /^    server 127\.0\.0\.1:[0-9]+ max_fails/ { if (!done) { printf "%s", servers; done = 1 }; next }
        /^    listen 127\.0\.0\.1:[0-9]+;/ { print "    listen 127.0.0.1:" port ";"; next }
        { print }
    ' "$REPO_ROOT/deploy/nginx/hexride.conf" >"$CLUSTER_DIR/nginx/hexride.conf"
    cat >"$CLUSTER_DIR/nginx/nginx.conf" <<EOF
# Written by scripts/cluster.sh; the site itself is deploy/nginx/hexride.conf.
worker_processes 2;
pid $RUN_DIR/nginx.pid;
error_log $CLUSTER_DIR/nginx/error.log warn;
events {
    worker_connections 4096;
}
http {
    include $CLUSTER_DIR/nginx/hexride.conf;
    access_log $CLUSTER_DIR/nginx/access.log hexride buffer=64k flush=1s;
    client_body_temp_path $RUN_DIR/client_body;
    proxy_temp_path $RUN_DIR/proxy;
    fastcgi_temp_path $RUN_DIR/fastcgi;
    uwsgi_temp_path $RUN_DIR/uwsgi;
    scgi_temp_path $RUN_DIR/scgi;
}
EOF
    echo "$CLUSTER_DIR/nginx/nginx.conf"
}

start_nginx() {
    local nginx conf
    nginx=$(nginx_bin)
    conf=$(nginx_config)
    "$nginx" -t -q -c "$conf" -p "$CLUSTER_DIR/nginx" || die "nginx refuses $conf"
    if nginx_running; then
        nginx_reload
        return 0
    fi
    (cd / && exec "$nginx" -c "$conf" -p "$CLUSTER_DIR/nginx" 9>&-)
    wait_for "$TIMEOUT" port_open "$PORT" || die "nginx does not listen on $PORT"
    log "nginx on 127.0.0.1:$PORT (pid $(nginx_pid))"
}

# nginx_reload: new workers on the new configuration; returns once the old workers, and the
# upstream connections they hold, are gone (they finish their requests first).
nginx_reload() {
    local old
    old=$(pgrep -P "$(nginx_pid)" | xargs)
    kill -HUP "$(nginx_pid)"
    wait_for 30 workers_gone "$old" || die "nginx's old workers ($old) did not finish"
    log "nginx reloaded"
}

workers_gone() {
    local pid
    for pid in $1; do proc_alive "$pid" && return 1; done
    return 0
}

# restart_node NODE: SIGTERM (the node drains: readiness 503, still serving, each answer
# closing its connection), wait until it has exited, start it, wait until it is ready.
restart_node() {
    stop_node "$1"
    start_node "$1"
}

stop_nginx() {
    nginx_running || return 0
    kill -QUIT "$(nginx_pid)" # graceful: in-flight requests finish
    wait_for 30 nginx_gone || kill -TERM "$(nginx_pid)"
    log "nginx stopped"
}
nginx_gone() { ! nginx_running; }

# --- commands --------------------------------------------------------------------------------

cmd_up() {
    local node
    mkdir -p "$CLUSTER_DIR"
    infra_env
    BIN=$(binary)
    ensure_database
    for node in $(nodes); do start_node "$node"; done
    start_nginx
    echo "http://127.0.0.1:$PORT"
}

cmd_down() {
    local purge=${1:-} node
    case $purge in "" | --purge) ;; *) die "down takes only --purge" ;; esac
    stop_nginx
    # Every node at once: each drains for DRAIN_SECS.
    for node in $(nodes); do node_running "$node" && kill -TERM "$(node_pid "$node")"; done
    for node in $(nodes); do wait_for $((DRAIN_SECS + 25)) node_gone "$node" || die "$node did not stop"; done
    log "every node stopped"
    if [ -n "$purge" ]; then
        infra_env
        psql -X -q "$(db_url "$TEST_PG_PRIMARY_URL" | sed 's#/[^/]*$#/postgres#')" \
            -c "drop database if exists $DATABASE with (force)" >/dev/null
        purge_redis_keys
        rm -rf "${CLUSTER_DIR:?}" "$RUN_DIR"
        log "purged: database $DATABASE, its Redis keys, $CLUSTER_DIR"
    fi
}

cmd_status() {
    local node rc=0 pid ready
    for node in $(nodes); do
        if node_running "$node"; then
            pid=$(node_pid "$node")
            ready=$(readiness "$node")
            printf '%-10s up    pid %-8s ready %s\n' "$node" "$pid" "$ready"
            [ "$ready" = 200 ] || rc=3
        else
            printf '%-10s down\n' "$node"
            rc=3
        fi
    done
    if nginx_running; then
        printf '%-10s up    pid %-8s http://127.0.0.1:%s\n' nginx "$(nginx_pid)" "$PORT"
    else
        printf '%-10s down\n' nginx
        rc=3
    fi
    return $rc
}

# create_admin EMAIL: an admin account with the password in HEXRIDE_PASSWORD.
create_admin() {
    [ -n "${HEXRIDE_PASSWORD:-}" ] || die "set HEXRIDE_PASSWORD to the new account's password"
    cli admin create-user --role admin --email "$1" --name "Cluster admin" >/dev/null
}

# cmd_bench [SECONDS]: a cluster of its own (CLUSTER_DIR/bench, nginx on CLUSTER_PORT+60,
# database CLUSTER_DATABASE_bench), its per-client limits raised so that 32 members from one
# machine are not refused, then cluster_bench through nginx with api-1 alone in the upstream
# and with every API node (only nginx's upstream changes), after product reads straight on
# api-1 as the baseline; the bench cluster is purged at the end.
cmd_bench() {
    local seconds=${1:-15} rc=0
    export CLUSTER_DIR=$CLUSTER_DIR/bench CLUSTER_PORT=$((PORT + 60)) CLUSTER_DATABASE=${DATABASE}_bench
    export APP__AUTH__SIGN_UP_PER_IP_PER_MINUTE=1000000 APP__AUTH__LOGIN_PER_IP_PER_MINUTE=1000000
    export APP__AUTH__API_PER_MEMBER_PER_MINUTE=1000000 APP__LOG__LEVEL=${APP__LOG__LEVEL:-warn}
    "$0" up >/dev/null
    "$0" bench-run "$seconds" || rc=$?
    "$0" down --purge
    return $rc
}

cmd_bench_run() {
    local seconds=$1 email=bench-admin@hexride.test password n direct bench
    infra_env
    BIN=$(binary)
    password=$(secret bench-admin)
    HEXRIDE_PASSWORD=$password create_admin "$email" || log "the bench admin exists already"
    (cd "$REPO_ROOT" && cargo build -q --release -p tests --example cluster_bench)
    bench=$REPO_ROOT/target/release/examples/cluster_bench
    for n in 1 "$API_COUNT"; do
        LB_SERVERS=$n nginx_config >/dev/null
        nginx_reload
        sleep 1
        direct=
        [ "$n" != 1 ] || direct=http://127.0.0.1:$(api_port api-1)
        "$bench" "http://127.0.0.1:$PORT" "$seconds" "$email" "$password" "nginx + $n API" 32 $direct
    done
}

cmd_load() {
    local seconds=${1:-20}
    nginx_running || die "the cluster is not up (scripts/cluster.sh up)"
    (cd "$REPO_ROOT" && cargo run -q --release -p tests --example cluster_load -- "http://127.0.0.1:$PORT" "$seconds")
}

main() {
    local cmd=${1:-help}
    shift || true
    case $cmd in
        up) cmd_up ;;
        down) cmd_down "$@" ;;
        status) cmd_status ;;
        start | restart)
            [ $# -eq 1 ] || die "$cmd takes a node"
            check_node "$1"
            infra_env
            BIN=$(binary)
            if [ "$cmd" = start ]; then start_node "$1"; else restart_node "$1"; fi
            ;;
        stop)
            [ $# -eq 1 ] || die "stop takes a node"
            check_node "$1"
            stop_node "$1"
            ;;
        rolling-restart)
            infra_env
            BIN=$(binary)
            for node in $(nodes); do
                case $node in api-*) restart_node "$node" ;; esac
            done
            ;;
        kill)
            [ $# -eq 1 ] || die "kill takes a node"
            check_node "$1"
            kill_node "$1"
            ;;
        load) cmd_load "$@" ;;
        bench) cmd_bench "$@" ;;
        bench-run) cmd_bench_run "${1:-15}" ;;
        create-admin)
            [ $# -eq 1 ] || die "create-admin takes an e-mail address"
            infra_env
            BIN=$(binary)
            create_admin "$1"
            ;;
        url) echo "http://127.0.0.1:$PORT" ;;
        logs)
            [ $# -eq 1 ] || die "logs takes a node"
            if [ "$1" = nginx ]; then tail -n 40 "$CLUSTER_DIR/nginx/error.log"; else
                check_node "$1"
                tail -n 40 "$(node_dir "$1")/log"
            fi
            ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
