#!/usr/bin/env bash
# Run once by the postgres image's entrypoint, on the primary's first start (an empty data
# volume), as the postgres user, while the temporary socket-only server is up: the role and
# the physical replication slot the replica streams through, and the pg_hba line that lets
# it connect for replication from the Compose network. The image restarts the server after
# the init scripts, which loads the new pg_hba.conf.
set -euo pipefail

: "${HEXRIDE_REPLICATION_PASSWORD:?set HEXRIDE_REPLICATION_PASSWORD}"
: "${HEXRIDE_REPLICATION_NETWORK:?set HEXRIDE_REPLICATION_NETWORK (a CIDR)}"
slot=${HEXRIDE_REPLICATION_SLOT:-hexride_replica}

# The password travels as a psql variable (:'password' quotes it), never inside the SQL text.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$HEXRIDE_REPLICATION_PASSWORD" -v slot="$slot" <<'SQL'
create role replicator with replication login password :'password';
select pg_create_physical_replication_slot(:'slot');
SQL

echo "host replication replicator $HEXRIDE_REPLICATION_NETWORK scram-sha-256" >>"$PGDATA/pg_hba.conf"
echo "postgres-primary-init: role replicator, slot $slot, replication from $HEXRIDE_REPLICATION_NETWORK"
