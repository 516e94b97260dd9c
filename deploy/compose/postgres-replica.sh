#!/usr/bin/env bash
# Entrypoint of the postgres-replica service (deploy/compose/compose.yaml), as root like the
# image's own: on an empty data volume, a base backup of the primary through its replication
# slot (-R writes standby.signal and primary_conninfo with the slot's name), then the image's
# entrypoint, which finds an initialised data directory and starts the standby.
set -euo pipefail

: "${HEXRIDE_PRIMARY_HOST:?set HEXRIDE_PRIMARY_HOST}"
: "${HEXRIDE_REPLICATION_PASSWORD:?set HEXRIDE_REPLICATION_PASSWORD}"
slot=${HEXRIDE_REPLICATION_SLOT:-hexride_replica}
PGDATA=${PGDATA:-/var/lib/postgresql/data}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    # The primary is healthy before this starts (depends_on), but keep trying a little: a
    # backup interrupted half-way leaves files behind, so each try starts from empty.
    for attempt in $(seq 1 30); do
        if gosu postgres env PGPASSWORD="$HEXRIDE_REPLICATION_PASSWORD" \
            pg_basebackup --host "$HEXRIDE_PRIMARY_HOST" --username replicator \
            --pgdata "$PGDATA" --wal-method stream --slot "$slot" --write-recovery-conf \
            --checkpoint fast --no-password; then
            echo "postgres-replica: base backup of $HEXRIDE_PRIMARY_HOST taken (attempt $attempt)"
            break
        fi
        [ "$attempt" -lt 30 ] || { echo "postgres-replica: no base backup after $attempt attempts" >&2; exit 1; }
        find "$PGDATA" -mindepth 1 -delete
        sleep 2
    done
fi

exec docker-entrypoint.sh "$@"
