//! Events: the transactional outbox and the consumers' inbox. Events are appended in the
//! state change's transaction. Relays claim rows with a lease, locking them with the
//! dialect's `skip locked` where it has one (SQLite's single writer needs none), and a row
//! waits while an earlier row of its aggregate is still pending, so per-aggregate order holds.
//! Leases and due times are the relay instance's clock: instances' clocks must agree to well
//! within a lease (seconds).

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use uuid::Uuid;

use core_domain::event::DomainEvent;
use core_domain::insurance::InsurerCallback;
use core_domain::{EventId, PolicyId};
use ports::{
    Consistency, Consumption, EventTrailReads, EventWrites, OutboxRecord, OutboxStats, OutboxStore, StoreError,
    TrailEvent,
};

use crate::SqlUnitOfWork;
use crate::backend::{Backend, Transaction};
use crate::sql::{Lock, SqlConn, Statement, sql};
use crate::{Columns, SqlStore};

/// An `outbox` row (the aggregate id is the record's key).
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn record(row: &impl Columns) -> Result<OutboxRecord, StoreError> {
    Ok(OutboxRecord {
        id: row.id("id")?,
        seq: row.int("seq")?,
        topic: row.text("topic")?,
        event_type: row.text("event_type")?,
        key: row.text("aggregate_id")?,
        payload: row.text("payload")?,
        attempts: row.int32("attempts")?,
        created_at: row.time("created_at")?,
    })
}

/// Claimed `outbox` rows in append order (`seq`), whatever order the statement that claimed
/// them returned them in (`update … returning` promises none).
fn in_append_order(mut records: Vec<OutboxRecord>) -> Vec<OutboxRecord> {
    records.sort_by_key(|r| r.seq);
    records
}

/// The row of the stats query: `backlog`, `oldest` (null when nothing is pending) and `dead`.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn stats(row: &impl Columns) -> Result<OutboxStats, StoreError> {
    Ok(OutboxStats {
        backlog: row.int("backlog")?,
        oldest_created_at: row.opt_time("oldest")?,
        dead: row.int("dead")?,
    })
}

/// Appends `events` in order; each is due at once (`available_at` is the store's clock, not
/// the event's time, so an event stamped by a test clock is never held back).
pub(crate) async fn append(conn: &mut impl SqlConn, events: &[DomainEvent]) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    for event in events {
        let record = OutboxRecord::of(event);
        sql(
            "insert into outbox (id, topic, event_type, aggregate_id, payload, status, attempts, \
             available_at, created_at, updated_at) values (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
        )
        .id(record.id)
        .text(&record.topic)
        .text(&record.event_type)
        .text(&record.key)
        .text(&record.payload)
        .time(now)
        .time(record.created_at)
        .time(now)
        .defer(&mut *conn, None)
        .await?;
    }
    Ok(())
}

/// `true` if the row was new, `false` for a redelivery. A concurrent consumer of the same
/// event waits here for the other transaction, then sees its row.
pub(crate) async fn record_inbox(
    conn: &mut impl SqlConn,
    consumer: &str,
    event_id: EventId,
) -> Result<bool, StoreError> {
    sql("insert into inbox (consumer, event_id, processed_at) values (?, ?, ?) {skip_duplicate}")
        .text(consumer)
        .id(event_id)
        .time(OffsetDateTime::now_utc())
        .insert_unless_duplicate(conn)
        .await
}

/// [`record_inbox`] with nothing to read back ([`EventWrites::record_delivery`]): queued. Where
/// the dialect has no `{skip_duplicate}` (MySQL), a duplicate is a conflict.
async fn record_delivery(conn: &mut impl SqlConn, consumer: &str, event_id: EventId) -> Result<(), StoreError> {
    sql("insert into inbox (consumer, event_id, processed_at) values (?, ?, ?) {skip_duplicate}")
        .text(consumer)
        .id(event_id)
        .time(OffsetDateTime::now_utc())
        .defer(conn, None)
        .await
}

async fn consumed(conn: &mut impl SqlConn, consumer: &str, event_id: EventId) -> Result<bool, StoreError> {
    let row = sql("select consumer from inbox where consumer = ? and event_id = ?")
        .text(consumer)
        .id(event_id)
        .fetch_optional(conn, |row| row.text("consumer"))
        .await?;
    Ok(row.is_some())
}

/// An outbox row as the trail shows it, without its consumers yet.
fn trail_event(row: &impl Columns) -> Result<TrailEvent, StoreError> {
    let aggregate = row.text("aggregate_id")?;
    Ok(TrailEvent {
        id: row.id("id")?,
        topic: row.text("topic")?,
        event_type: row.text("event_type")?,
        aggregate_id: aggregate
            .parse()
            .map_err(|_| crate::corrupt("aggregate_id", format_args!("not a uuid: `{aggregate}`")))?,
        payload: row.text("payload")?,
        status: row.text("status")?,
        attempts: i64::from(row.int32("attempts")?),
        last_error: row.opt_text("last_error")?,
        created_at: row.time("created_at")?,
        sent_at: row.opt_time("sent_at")?,
        consumed: Vec::new(),
    })
}

/// The outbox rows of `aggregates`, newest first, each with its inbox records.
async fn events_of(conn: &mut impl SqlConn, aggregates: &[String], limit: i64) -> Result<Vec<TrailEvent>, StoreError> {
    if aggregates.is_empty() {
        return Ok(Vec::new());
    }
    let mut events = sql(
        "select id, topic, event_type, aggregate_id, payload, status, attempts, last_error, created_at, sent_at \
         from outbox where aggregate_id in (?) order by seq desc limit ?",
    )
    .texts(aggregates)
    .limit(limit)
    .fetch_all(&mut *conn, trail_event)
    .await?;
    if events.is_empty() {
        return Ok(events);
    }
    let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    let inbox =
        sql("select consumer, event_id, processed_at from inbox where event_id in (?) order by processed_at, consumer")
            .ids(&ids)
            .fetch_all(conn, |row| {
                Ok((
                    row.id::<EventId>("event_id")?,
                    Consumption {
                        consumer: row.text("consumer")?,
                        processed_at: row.time("processed_at")?,
                    },
                ))
            })
            .await?;
    for (event_id, consumption) in inbox {
        if let Some(event) = events.iter_mut().find(|e| e.id == event_id) {
            event.consumed.push(consumption);
        }
    }
    Ok(events)
}

#[async_trait]
impl<B: Backend> EventTrailReads for SqlStore<B> {
    async fn events_of(
        &self,
        aggregates: &[Uuid],
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<TrailEvent>, StoreError> {
        // The outbox keys aggregates as text (the Kafka key).
        let keys: Vec<String> = aggregates.iter().map(Uuid::to_string).collect();
        self.read(&consistency, (keys, limit), |conn, (keys, limit)| {
            Box::pin(events_of(conn, keys, *limit))
        })
        .await
    }

    async fn consumed(&self, consumer: &str, event_id: EventId, consistency: Consistency) -> Result<bool, StoreError> {
        self.read(
            &consistency,
            (consumer.to_owned(), event_id),
            |conn, (consumer, event_id)| Box::pin(consumed(conn, consumer, *event_id)),
        )
        .await
    }

    async fn insurer_callbacks(
        &self,
        policy_id: PolicyId,
        consistency: Consistency,
    ) -> Result<Vec<InsurerCallback>, StoreError> {
        self.read(&consistency, policy_id, |conn, &id| {
            Box::pin(crate::insurance::callbacks_of_policy(conn, id))
        })
        .await
    }
}

#[async_trait]
impl<B: Backend> EventWrites for SqlUnitOfWork<B> {
    async fn append(&mut self, events: &[DomainEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let result = append(&mut self.conn()?, events).await;
        self.track(result)?;
        self.tell_relays();
        Ok(())
    }

    async fn record_inbox(&mut self, consumer: &str, event_id: EventId) -> Result<bool, StoreError> {
        let result = record_inbox(&mut self.conn()?, consumer, event_id).await;
        self.track(result)
    }

    async fn record_delivery(&mut self, consumer: &str, event_id: EventId) -> Result<(), StoreError> {
        let result = record_delivery(&mut self.conn()?, consumer, event_id).await;
        self.track(result)
    }
}

/// The relay's claim: at most `limit` pending rows due at `now` and not leased, whose
/// aggregate has no earlier pending row, in append order, locked, skipping rows another
/// relay is claiming; for [`record`].
pub(crate) fn claim_statement<'a>(now: OffsetDateTime, limit: i64) -> Statement<'a> {
    sql(
        "select o.seq, o.id, o.topic, o.event_type, o.aggregate_id, o.payload, o.attempts, o.created_at \
         from outbox o \
         where o.status = 'pending' and o.available_at <= ? \
           and (o.claimed_until is null or o.claimed_until < ?) \
           and not exists (select 1 from outbox o2 where o2.aggregate_id = o.aggregate_id \
                           and o2.seq < o.seq and o2.status = 'pending') \
         order by o.seq limit ? {lock}",
    )
    .time(now)
    .time(now)
    .limit(limit)
    .lock(Lock::SkipLocked)
}

#[async_trait]
impl<B: Backend> OutboxStore for SqlStore<B> {
    /// One short transaction: the select locks the rows it picks and skips rows another
    /// relay is claiming right now (a row another relay claimed and committed meanwhile fails
    /// the lease condition when the select gets to it), and the update leases them. Two
    /// statements rather than `update … where seq in (select … limit) returning`, which
    /// MySQL and MariaDB do not have.
    async fn claim(&self, owner: &str, limit: i64, lease: Duration) -> Result<Vec<OutboxRecord>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let now = OffsetDateTime::now_utc();
        let until = now.saturating_add(time::Duration::try_from(lease).unwrap_or(time::Duration::MAX));
        let mut tx = Transaction::new(self.backend().begin().await?);
        let rows = claim_statement(now, limit).fetch_all(tx.conn()?, record).await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(rows);
        }
        let ids: Vec<EventId> = rows.iter().map(|r| r.id).collect();
        sql("update outbox set claimed_by = ?, claimed_until = ?, updated_at = ? where id in (?)")
            .text(owner)
            .time(until)
            .time(now)
            .ids(&ids)
            .execute(tx.conn()?)
            .await?;
        tx.commit().await?;
        Ok(in_append_order(rows))
    }

    async fn mark_sent(&self, ids: &[EventId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        sql(
            "update outbox set status = 'sent', sent_at = ?, claimed_by = null, claimed_until = null, \
             updated_at = ? where id in (?)",
        )
        .time(now)
        .time(now)
        .ids(ids)
        .execute(&mut self.primary().await?)
        .await?;
        Ok(())
    }

    async fn mark_failed(
        &self,
        id: EventId,
        error: &str,
        retry_at: OffsetDateTime,
        dead: bool,
    ) -> Result<(), StoreError> {
        sql(
            "update outbox set attempts = attempts + 1, claimed_by = null, claimed_until = null, \
             available_at = ?, last_error = ?, status = case when ? then 'dead' else status end, \
             updated_at = ? where id = ?",
        )
        .time(retry_at)
        .text(error)
        .bool(dead)
        .time(OffsetDateTime::now_utc())
        .id(id)
        .execute(&mut self.primary().await?)
        .await?;
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        self.read(&ports::Consistency::Strong, (), |conn, ()| {
            Box::pin(
                sql(
                    "select (select count(*) from outbox where status = 'pending') as backlog, \
                            (select min(created_at) from outbox where status = 'pending') as oldest, \
                            (select count(*) from outbox where status = 'dead') as dead",
                )
                .fetch_one(conn, stats),
            )
        })
        .await
    }

    /// Woken by this instance's commits that appended events, and by other instances' where
    /// the backend hears of them (PostgreSQL: `LISTEN`). A wake-up with nobody waiting is
    /// kept as a permit, so a call made after such a commit returns at once.
    async fn wait_for_events(&self, max_wait: Duration) {
        self.wait_for_events(max_wait).await;
    }
}
#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::fake::Row;

    fn row(seq: i64) -> Row {
        Row::default()
            .with("id", Uuid::from_u128(seq.unsigned_abs().into()))
            .with("seq", seq)
            .with("topic", "t")
            .with("event_type", "e")
            .with("aggregate_id", "a")
            .with("payload", "{}")
            .with("attempts", 0)
            .with("created_at", 0)
    }

    #[test]
    fn claimed_records_come_in_append_order() {
        let records = in_append_order([row(3), row(1), row(2)].iter().map(|r| record(r).unwrap()).collect());
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
