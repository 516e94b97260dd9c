//! The transactional outbox and the consumers' inbox. Events are appended in the state
//! change's transaction; relays claim rows with a lease (SQLite has no `skip locked`), and a
//! row waits while an earlier row of its aggregate is still pending, so per-aggregate order holds.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use core_domain::EventId;
use core_domain::event::DomainEvent;
use ports::{OutboxRecord, OutboxStats, OutboxStore, StoreError};

use crate::codec::{self, Row, duration_micros, micros, now_micros};
use crate::{SqliteStore, translate};

/// Appends `events` in order; each is due at once (`available_at` is the store's clock, not
/// the event's time, so an event stamped by a test clock is never held back).
pub(crate) async fn append(conn: &mut SqliteConnection, events: &[DomainEvent]) -> Result<(), StoreError> {
    let now = now_micros();
    for event in events {
        let record = OutboxRecord::of(event);
        sqlx::query(
            "insert into outbox (id, topic, event_type, aggregate_id, payload, status, attempts, \
             available_at, created_at) values (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?7)",
        )
        .bind(record.id.to_string())
        .bind(record.topic)
        .bind(record.event_type)
        .bind(record.key)
        .bind(record.payload)
        .bind(now)
        .bind(micros(record.created_at))
        .execute(&mut *conn)
        .await
        .map_err(translate)?;
    }
    Ok(())
}

/// `true` if the row was new, `false` for a redelivery.
pub(crate) async fn record_inbox(
    conn: &mut SqliteConnection,
    consumer: &str,
    event_id: EventId,
) -> Result<bool, StoreError> {
    let result = sqlx::query(
        "insert into inbox (consumer, event_id, processed_at) values (?1, ?2, ?3) \
         on conflict (consumer, event_id) do nothing",
    )
    .bind(consumer)
    .bind(event_id.to_string())
    .bind(now_micros())
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(result.rows_affected() == 1)
}

#[async_trait]
impl OutboxStore for SqliteStore {
    /// One `update … returning` on the writer: selecting the rows and setting the claim are
    /// a single write transaction, so two relays can never claim the same row.
    async fn claim(&self, owner: &str, limit: i64, lease: Duration) -> Result<Vec<OutboxRecord>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let now = now_micros();
        let rows = sqlx::query(
            "update outbox set claimed_by = ?1, claimed_until = ?2 where seq in ( \
               select o.seq from outbox o \
               where o.status = 'pending' and o.available_at <= ?3 \
                 and (o.claimed_until is null or o.claimed_until < ?3) \
                 and not exists (select 1 from outbox o2 where o2.aggregate_id = o.aggregate_id \
                                 and o2.seq < o.seq and o2.status = 'pending') \
               order by o.seq limit ?4) \
             returning seq, id, topic, event_type, aggregate_id, payload, attempts, created_at",
        )
        .bind(owner)
        .bind(now.saturating_add(duration_micros(lease)))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.inner.writer)
        .await
        .map_err(translate)?;
        sql_rows::outbox::claimed(rows.iter().map(Row))
    }

    async fn mark_sent(&self, ids: &[EventId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "update outbox set status = 'sent', sent_at = ?1, claimed_by = null, \
             claimed_until = null where id in (select value from json_each(?2))",
        )
        .bind(now_micros())
        .bind(codec::json_ids(ids)?)
        .execute(&self.inner.writer)
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
             available_at = ?2, last_error = ?3, \
             status = case when ?4 then 'dead' else status end where id = ?1",
        )
        .bind(id.to_string())
        .bind(micros(retry_at))
        .bind(error)
        .bind(dead)
        .execute(&self.inner.writer)
        .await
        .map_err(translate)?;
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        let row = sqlx::query(
            "select (select count(*) from outbox where status = 'pending') as backlog, \
                    (select min(created_at) from outbox where status = 'pending') as oldest, \
                    (select count(*) from outbox where status = 'dead') as dead",
        )
        .fetch_one(&mut *self.reader().await?)
        .await
        .map_err(translate)?;
        sql_rows::outbox::stats(&Row(&row))
    }

    /// A commit that appended events stores a wake-up permit, so a call made after that
    /// commit returns at once even if nobody was waiting when it happened.
    async fn wait_for_events(&self, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait, self.inner.events.notified()).await;
    }
}
