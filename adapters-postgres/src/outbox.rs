//! The transactional outbox and the consumers' inbox. Events are appended in the state
//! change's transaction, which also notifies `hexride_outbox` (delivered on commit) so relays
//! on every instance wake. Relays claim rows with `for update skip locked` plus a lease, and a
//! row waits while an earlier row of its aggregate is still pending, so per-aggregate order
//! holds.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use core_domain::EventId;
use core_domain::event::DomainEvent;
use ports::{OutboxRecord, OutboxStats, OutboxStore, StoreError};

use crate::codec::Row;
use crate::{OUTBOX_CHANNEL, PgStore, translate};

/// How long the listener waits before reconnecting after it lost the primary.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// Appends `events` in order; each is due at once. With `notify`, also queues the wake-up
/// notification (one per transaction is enough: PostgreSQL delivers it on commit, and drops
/// it on rollback).
pub(crate) async fn append(conn: &mut PgConnection, events: &[DomainEvent], notify: bool) -> Result<(), StoreError> {
    for event in events {
        let record = OutboxRecord::of(event);
        sqlx::query(
            "insert into outbox (id, topic, event_type, aggregate_id, payload, status, attempts, \
             available_at, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, 'pending', 0, now(), $6, now())",
        )
        .bind(record.id.0)
        .bind(record.topic)
        .bind(record.event_type)
        .bind(record.key)
        .bind(record.payload)
        .bind(record.created_at)
        .execute(&mut *conn)
        .await
        .map_err(translate)?;
    }
    if notify && !events.is_empty() {
        sqlx::query("select pg_notify($1, '')")
            .bind(OUTBOX_CHANNEL)
            .execute(&mut *conn)
            .await
            .map_err(translate)?;
    }
    Ok(())
}

/// `true` if the row was new, `false` for a redelivery. A concurrent consumer of the same
/// event waits here for the other transaction, then sees its row.
pub(crate) async fn record_inbox(
    conn: &mut PgConnection,
    consumer: &str,
    event_id: EventId,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "insert into inbox (consumer, event_id, processed_at) values ($1, $2, now()) \
         on conflict (consumer, event_id) do nothing",
    )
    .bind(consumer)
    .bind(event_id.0)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(result.rows_affected() == 1)
}

#[async_trait]
impl OutboxStore for PgStore {
    /// One statement: the inner select locks the rows it picks and skips rows another relay
    /// is claiming right now; a row claimed (and committed) by another relay meanwhile fails
    /// the re-check of the lease condition when it is locked. Leases use the database's
    /// clock, the one clock every instance shares.
    async fn claim(&self, owner: &str, limit: i64, lease: Duration) -> Result<Vec<OutboxRecord>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "update outbox set claimed_by = $1, claimed_until = now() + $2, updated_at = now() \
             where seq in ( \
               select o.seq from outbox o \
               where o.status = 'pending' and o.available_at <= now() \
                 and (o.claimed_until is null or o.claimed_until < now()) \
                 and not exists (select 1 from outbox o2 where o2.aggregate_id = o.aggregate_id \
                                 and o2.seq < o.seq and o2.status = 'pending') \
               order by o.seq limit $3 \
               for update skip locked) \
             returning seq, id, topic, event_type, aggregate_id, payload, attempts, created_at",
        )
        .bind(owner)
        .bind(lease)
        .bind(limit)
        .fetch_all(&self.inner.primary)
        .await
        .map_err(translate)?;
        sql_rows::outbox::claimed(rows.iter().map(Row))
    }

    async fn mark_sent(&self, ids: &[EventId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        sqlx::query(
            "update outbox set status = 'sent', sent_at = now(), claimed_by = null, \
             claimed_until = null, updated_at = now() where id = any($1)",
        )
        .bind(ids)
        .execute(&self.inner.primary)
        .await
        .map_err(translate)?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: EventId,
        error: &str,
        retry_at: OffsetDateTime,
        dead: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "update outbox set attempts = attempts + 1, claimed_by = null, claimed_until = null, \
             available_at = $2, last_error = $3, \
             status = case when $4 then 'dead' else status end, updated_at = now() where id = $1",
        )
        .bind(id.0)
        .bind(retry_at)
        .bind(error)
        .bind(dead)
        .execute(&self.inner.primary)
        .await
        .map_err(translate)?;
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        let row = sqlx::query(
            "select count(*) filter (where status = 'pending') as backlog, \
                    min(created_at) filter (where status = 'pending') as oldest, \
                    count(*) filter (where status = 'dead') as dead \
             from outbox where status in ('pending', 'dead')",
        )
        .fetch_one(&self.inner.primary)
        .await
        .map_err(translate)?;
        sql_rows::outbox::stats(&Row(&row))
    }

    /// Woken by any instance's commit that appended events (through the listener), and by
    /// this instance's at once. A wake-up with nobody waiting is kept as a permit, so a call
    /// made after such a commit returns at once. With the listener down, other instances'
    /// events are found after `max_wait`.
    async fn wait_for_events(&self, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait, self.inner.events.notified()).await;
    }
}

/// Listens on `hexride_outbox` on a connection of its own and wakes `events` for every
/// notification, reconnecting (every second) after the primary goes away, until `shutdown`.
/// After a reconnect it wakes `events` once: notifications sent meanwhile were lost.
pub(crate) async fn listen(options: PgConnectOptions, events: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_lazy_with(options);
    let mut was_connected = false;
    let mut failing = false;
    loop {
        let attempt = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(OUTBOX_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let listener = tokio::select! {
            result = attempt => result,
            _ = shutdown.changed() => return,
        };
        match listener {
            Ok(mut listener) => {
                if failing {
                    tracing::info!("outbox listener connected again");
                }
                if was_connected {
                    events.notify_one();
                }
                was_connected = true;
                loop {
                    tokio::select! {
                        received = listener.try_recv() => match received {
                            Ok(Some(_)) => events.notify_one(),
                            // The connection dropped and was re-established: wake in case.
                            Ok(None) => events.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "outbox listener lost the primary; relays fall back to polling");
                                // Reconnecting is the normal path now: warn only if it fails.
                                failing = false;
                                break;
                            }
                        },
                        _ = shutdown.changed() => return,
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "outbox listener cannot connect; relays fall back to polling");
                    failing = true;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(LISTEN_RETRY) => {}
            _ = shutdown.changed() => return,
        }
    }
}
