# shellcheck shell=bash
# A Redis Cluster for scripts/infra.sh: six Redis 7 nodes on 127.0.0.1, three masters each
# with one replica, without persistence (a restarted node comes back empty and resyncs from
# its master), daemonized as the redis user when we are root. The failover tests SIGKILL a
# master; its replica takes over within about two seconds (cluster-node-timeout 1000 ms).
# Sourced after infra-redis.sh (it uses that file's binaries and probes); see the service
# interface described in scripts/infra.sh.
#
# Node N listens on 27000+N (HEXRIDE_REDIS_CLUSTER_PORT moves them), its cluster bus 1000 higher.
# Both stay below Linux's ephemeral range (32768-60999): the nodes dial each other's bus ports
# while others are still starting, and a dial to a port nobody listens on yet can be given that
# very port as its source and connect to itself, leaving the node unable to listen there.
#
#   $INFRA_DIR/rediscluster/node-N             node N's working directory (nodes.conf, the
#                                              cluster's view that survives a restart)
#   $INFRA_DIR/rediscluster/node-N/redis.pid   pid file
#   $INFRA_DIR/rediscluster/node-N/redis.log   server log

RC_BASE_PORT=${HEXRIDE_REDIS_CLUSTER_PORT:-27001}
RC_NODES=6 # nodes 1-3 start as masters, 4-6 as their replicas
RC_ROOT=$INFRA_DIR/rediscluster
RC_CLI= # set by rediscluster_ensure_bin

rediscluster_components() {
    local n
    for ((n = 1; n <= RC_NODES; n++)); do echo "rediscluster-$n"; done
}

rc_port() { echo $((RC_BASE_PORT + $1 - 1)); }
rc_dir() { echo "$RC_ROOT/node-$1"; }

rediscluster_env() {
    local n seeds=()
    for ((n = 1; n <= 3; n++)); do seeds+=("127.0.0.1:$(rc_port "$n")"); done
    # Three seeds: the adapters discover the rest, and any one of them answering is enough.
    echo "export TEST_REDIS_CLUSTER_URL=redis+cluster://$(IFS=,; echo "${seeds[*]}")"
}

# rc_node COMPONENT: the node number of rediscluster-N.
rc_node() {
    [[ $1 =~ ^rediscluster-([1-9])$ ]] && ((BASH_REMATCH[1] <= RC_NODES)) || die "unknown Redis Cluster component: $1"
    echo "${BASH_REMATCH[1]}"
}

rediscluster_logfile() { echo "$(rc_dir "$(rc_node "$1")")/redis.log"; }

# rc_cli N ARGS...: redis-cli against node N.
rc_cli() {
    local n=$1
    shift
    "$RC_CLI" -h 127.0.0.1 -p "$(rc_port "$n")" "$@"
}

rediscluster_ensure_bin() {
    redis_ensure_bin
    RC_CLI=$(command -v redis-cli || true)
    if [ -z "$RC_CLI" ]; then
        apt_install redis-tools
        RC_CLI=$(command -v redis-cli || true)
        [ -n "$RC_CLI" ] || die "no redis-cli after installing redis-tools"
    fi
}

# --- one node ----------------------------------------------------------------------------------

rc_pid() { head -n 1 "$(rc_dir "$1")/redis.pid" 2>/dev/null || true; }
rc_running() { [ -n "$(procs_in_dir "$(rc_dir "$1")")" ]; }
rc_stopped() { ! rc_running "$1" && ! port_open "$(rc_port "$1")"; }
rc_is_up() { rc_running "$1" && redis_ping "$(rc_port "$1")"; }

rc_start_node() {
    local n=$1 dir port logfile
    dir=$(rc_dir "$n")
    port=$(rc_port "$n")
    logfile=$dir/redis.log
    mkdir -p "$dir"
    if is_root; then
        chown redis: "$RC_ROOT" "$dir"
        as_user redis test -w "$dir" || die "user redis cannot write $dir:" \
            "$(closed_ancestor redis "$dir") is closed to it; set INFRA_DIR elsewhere"
    fi
    if ! rc_running "$n"; then
        ! port_open "$port" || die "rediscluster-$n: port $port is taken by another process" \
            "(set HEXRIDE_REDIS_CLUSTER_PORT)"
        rm -f "$dir/redis.pid"
        log "rediscluster-$n: starting on 127.0.0.1:$port"
        # Replicas fail over however long their master has been gone (validity factor 0), and
        # the slots of the other masters keep serving while one master's are being taken over
        # (full coverage not required).
        # The cluster bus (node to node) listens on the port + 1000 (Redis's default of + 10000
        # would pass 65535).
        as_user redis "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 \
            --save '' --appendonly no \
            --cluster-enabled yes --cluster-port $((port + 1000)) --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
            --cluster-replica-validity-factor 0 --cluster-require-full-coverage no \
            --daemonize yes --pidfile "$dir/redis.pid" --logfile "$logfile" --dir "$dir" \
            --maxclients 10000 || {
            show_log "$logfile"
            die "rediscluster-$n: failed to start"
        }
    fi
    wait_for "$INFRA_TIMEOUT" rc_is_up "$n" || {
        show_log "$logfile"
        die "rediscluster-$n: not answering PING on port $port after ${INFRA_TIMEOUT}s"
    }
}

rc_wait_stopped() {
    local n=$1
    wait_for 10 rc_stopped "$n" && return 0
    log "rediscluster-$n: SIGKILL leftover processes"
    procs_in_dir "$(rc_dir "$n")" | xargs -r kill -KILL
    wait_for 5 rc_stopped "$n" || die "rediscluster-$n: still running or port $(rc_port "$n") still taken"
}

rc_stop_node() {
    local n=$1 pid
    rc_running "$n" || return 0
    log "rediscluster-$n: stopping"
    pid=$(rc_pid "$n")
    if pid_in_dir "$pid" "$(rc_dir "$n")"; then kill -TERM "$pid"; fi
    rc_wait_stopped "$n"
}

# --- the cluster as a whole ----------------------------------------------------------------------

# rc_info N FIELD: one field of node N's CLUSTER INFO.
rc_info() {
    rc_cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

# rc_healthy: every node sees the whole cluster in state ok, and every master has a replica
# whose link is up (so a master can be lost without losing its slots).
rc_healthy() {
    local n
    for ((n = 1; n <= RC_NODES; n++)); do
        [ "$(rc_info "$n" cluster_state)" = ok ] || return 1
        [ "$(rc_info "$n" cluster_known_nodes)" = "$RC_NODES" ] || return 1
        [ "$(rc_info "$n" cluster_size)" = 3 ] || return 1
    done
    # Every replica is linked to its master.
    for ((n = 1; n <= RC_NODES; n++)); do
        if rc_cli "$n" info replication | tr -d '\r' | grep -q '^role:slave'; then
            rc_cli "$n" info replication | tr -d '\r' | grep -q '^master_link_status:up' || return 1
        fi
    done
}

# rc_create: form the cluster from six fresh nodes (first `up` only; afterwards each node's
# nodes.conf brings it back into the cluster on restart).
rc_create() {
    local n nodes=()
    [ "$(rc_info 1 cluster_known_nodes)" = 1 ] || return 0
    for ((n = 1; n <= RC_NODES; n++)); do nodes+=("127.0.0.1:$(rc_port "$n")"); done
    log "rediscluster: creating the cluster (3 masters, 1 replica each)"
    "$RC_CLI" --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >&2 ||
        die "rediscluster: redis-cli --cluster create failed"
}

rc_wait_healthy() {
    wait_for "$INFRA_TIMEOUT" rc_healthy || {
        local n
        for ((n = 1; n <= RC_NODES; n++)); do
            log "rediscluster-$n: state=$(rc_info "$n" cluster_state) known=$(rc_info "$n" cluster_known_nodes)"
        done
        die "rediscluster: not healthy after ${INFRA_TIMEOUT}s"
    }
}

# --- the service interface -------------------------------------------------------------------

rediscluster_up() {
    local n
    rediscluster_ensure_bin
    mkdir -p "$RC_ROOT"
    for ((n = 1; n <= RC_NODES; n++)); do rc_start_node "$n"; done
    rc_create
    rc_wait_healthy
}

rediscluster_down() {
    local n
    for ((n = RC_NODES; n >= 1; n--)); do rc_stop_node "$n"; done
}

# rediscluster_start COMPONENT: start one node; it rejoins the cluster (as a replica if its
# slots were taken over meanwhile) and the cluster is waited for until healthy again.
rediscluster_start() {
    local n
    n=$(rc_node "$1")
    rediscluster_ensure_bin
    rc_start_node "$n"
    rc_wait_healthy
}

rediscluster_stop() { rc_stop_node "$(rc_node "$1")"; }

# rediscluster_kill COMPONENT: SIGKILL the node, as a crash would, and wait until its port is
# closed.
rediscluster_kill() {
    local n pid
    n=$(rc_node "$1")
    pid=$(rc_pid "$n")
    if ! pid_in_dir "$pid" "$(rc_dir "$n")"; then
        log "rediscluster-$n: not running"
        return 0
    fi
    log "rediscluster-$n: SIGKILL $pid"
    kill -KILL "$pid"
    rc_wait_stopped "$n"
}

rediscluster_status() {
    local n state role detail rc=0
    rediscluster_ensure_bin
    for ((n = 1; n <= RC_NODES; n++)); do
        detail=
        if rc_is_up "$n"; then
            role=$(rc_cli "$n" info replication 2>/dev/null | tr -d '\r' | sed -n 's/^role://p')
            state=up
            [ "$(rc_info "$n" cluster_state)" = ok ] || state=starting
            detail="pid=$(rc_pid "$n") ${role/slave/replica}"
        elif rc_running "$n"; then
            state=starting
        else
            state=down
            if port_open "$(rc_port "$n")"; then detail="(port taken by another process)"; fi
        fi
        printf '%-16s %-9s 127.0.0.1:%-6s %s\n' "rediscluster-$n" "$state" "$(rc_port "$n")" "$detail"
        [ "$state" = up ] || rc=1
    done
    return $rc
}
