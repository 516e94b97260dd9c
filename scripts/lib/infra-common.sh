# shellcheck shell=bash
# Helpers shared by the services of scripts/infra.sh. Sourced, not run.

log() { printf 'infra: %s\n' "$*" >&2; }
die() {
    printf 'infra: error: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# as_user USER CMD...: run CMD as USER when we are root (database servers refuse to run as
# root), otherwise as ourselves. Start every server through it: it runs from / (so no server
# inherits an unreadable cwd) and closes the lock descriptor, fd 9, which a daemon would
# otherwise inherit and hold for as long as it runs.
as_user() {
    local user=$1
    shift
    if is_root; then
        (cd / && runuser -u "$user" -- "$@") 9>&-
    else
        (cd / && "$@") 9>&-
    fi
}

# ensure_system_user NAME: create a system account for a server when it is missing (root only).
ensure_system_user() {
    local user=$1
    is_root || return 0
    id "$user" >/dev/null 2>&1 && return 0
    log "creating system user $user"
    useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin "$user"
}

# closed_ancestor USER PATH: the first directory on PATH that USER cannot enter (or PATH).
closed_ancestor() {
    local user=$1 dir=/ part
    local IFS=/
    for part in ${2#/}; do
        dir=${dir%/}/$part
        as_user "$user" test -x "$dir" || break
    done
    echo "$dir"
}

# apt_install PACKAGE...: install Debian packages (root only), refreshing the package lists
# when the first attempt fails (a fresh machine often has none). Output goes to stderr so
# that stdout stays clean for `eval "$(scripts/infra.sh up)"`.
apt_install() {
    is_root || die "missing $*; install it or run as root so that apt-get can"
    command -v apt-get >/dev/null || die "missing $*, and this is not a Debian machine (no apt-get)"
    log "installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    # Another install may hold dpkg's lock (test.sh runs infra.sh beside other steps): wait.
    local wait=(-o DPkg::Lock::Timeout=600)
    if ! apt-get "${wait[@]}" install -y -q --no-install-recommends "$@" >&2; then
        apt-get "${wait[@]}" update -q >&2
        apt-get "${wait[@]}" install -y -q --no-install-recommends "$@" >&2
    fi
}

# proc_alive PID: true when PID is a live process. A zombie counts as dead: it still answers
# `kill -0`, but it holds no port, no file and no shared memory.
proc_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
    stat=${stat##*) } # drop "pid (comm) ", leaving the state letter first
    [ "${stat%% *}" != Z ]
}

# procs_in_dir DIR: live processes whose working directory is DIR. Database servers chdir to
# their data directory, so this finds a server and all of its children even after the parent
# was killed and the children were re-parented.
procs_in_dir() {
    local p
    [ -d "$1" ] || return 0
    for p in /proc/[0-9]*; do
        # -ef: the same file (device and inode); a shell builtin, so no fork per process.
        if [ "$p/cwd" -ef "$1" ] && proc_alive "${p#/proc/}"; then echo "${p#/proc/}"; fi
    done
    return 0
}

# wait_for SECONDS CMD...: run CMD every 0.1 s until it succeeds; fail after SECONDS.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# show_log FILE: the end of a server log, for error messages.
show_log() {
    [ -f "$1" ] || return 0
    printf 'infra: --- last lines of %s ---\n' "$1" >&2
    tail -n 25 "$1" >&2
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# pid_in_dir PID DIR: true when PID is a live process working in DIR. Guards every kill
# against a PID that a stale pid file names but that now belongs to another process.
pid_in_dir() {
    proc_alive "$1" && [ "/proc/$1/cwd" -ef "$2" ]
}

# reserve_ports PORT...: keep PORTs out of the kernel's choice of source ports for outgoing
# connections (net.ipv4.ip_local_reserved_ports), best effort, as root only. Our servers
# listen inside the ephemeral range (32768-60999); while one is down (a fault test killed
# it), a client dialling it can be given that very port as its source and connect to itself,
# and the server then cannot listen there when it comes back.
reserve_ports() {
    local file=/proc/sys/net/ipv4/ip_local_reserved_ports current
    is_root && [ -w "$file" ] || return 0
    current=$(cat "$file")
    local IFS=,
    echo "${current:+$current,}$*" >"$file" 2>/dev/null || log "could not reserve ports $*"
}
