//! Driving licences and their checks. `expires_on`, a date, is stored as that day's
//! midnight UTC, which every dialect binds as a time.

use async_trait::async_trait;
use time::{Date, OffsetDateTime};

use core_domain::MemberId;
use core_domain::licence::{DueCutoffs, Licence, LicenceCheck};
use ports::{Consistency, LicenceReads, LicenceWrites, StoreError};

use crate::SqlUnitOfWork;
use crate::backend::Backend;
use crate::sql::{Lock, SqlConn, Statement, sql};
use crate::{Columns, SqlStore, require_row};

fn day(date: Date) -> OffsetDateTime {
    date.midnight().assume_utc()
}

/// A `licences` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn licence(row: &impl Columns) -> Result<Licence, StoreError> {
    Ok(Licence {
        member_id: row.id("member_id")?,
        number: row.text("number")?,
        expires_on: row.time("expires_on")?.date(),
        status: row.parsed("status")?,
        status_reason: row.opt_text("status_reason")?,
        last_verified_at: row.time("last_verified_at")?,
        registered_at: row.time("registered_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// A `licence_checks` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn licence_check(row: &impl Columns) -> Result<LicenceCheck, StoreError> {
    Ok(LicenceCheck {
        id: row.id("id")?,
        member_id: row.id("member_id")?,
        number: row.text("number")?,
        status: row.parsed("status")?,
        reason: row.opt_text("reason")?,
        actor: row.parsed("actor")?,
        checked_at: row.time("checked_at")?,
    })
}

fn by_member<'a>(member_id: MemberId, lock: Lock) -> Statement<'a> {
    sql("select * from licences where member_id = ? {lock}")
        .id(member_id)
        .lock(lock)
}

/// Due licences ([`Licence::is_due`]) after `after` in member-id order: the keyset the
/// re-verification batch walks.
pub(crate) fn due_statement<'a>(cutoffs: &DueCutoffs, after: Option<MemberId>, limit: i64) -> Statement<'a> {
    sql(
        "select * from licences where status = 'valid' and (expires_on <= ? or last_verified_at <= ?) \
         and member_id > ? order by member_id limit ?",
    )
    .time(day(cutoffs.expires_by))
    .time(cutoffs.verified_before)
    .after_id(after)
    .limit(limit)
}

#[async_trait]
impl<B: Backend> LicenceWrites for SqlUnitOfWork<B> {
    async fn licence_for_update(&mut self, member_id: MemberId) -> Result<Option<Licence>, StoreError> {
        let result = by_member(member_id, Lock::ForUpdate)
            .fetch_optional(&mut self.conn()?, licence)
            .await;
        self.track(result)
    }

    async fn licences_for_update(&mut self, member_ids: &[MemberId]) -> Result<Vec<Licence>, StoreError> {
        if member_ids.is_empty() {
            return Ok(Vec::new());
        }
        let result = sql("select * from licences where member_id in (?) order by member_id {lock}")
            .ids(member_ids)
            .lock(Lock::ForUpdate)
            .fetch_all(&mut self.conn()?, licence)
            .await;
        self.track(result)
    }

    async fn save_licence(&mut self, l: &Licence) -> Result<(), StoreError> {
        let result = save(&mut self.conn()?, l).await;
        self.track(result)
    }

    async fn insert_check(&mut self, c: &LicenceCheck) -> Result<(), StoreError> {
        let result = sql(
            "insert into licence_checks (id, member_id, number, status, reason, actor, checked_at, created_at) \
             values (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .id(c.id)
        .id(c.member_id)
        .text(&c.number)
        .text(c.status.as_str())
        .opt_text(c.reason.as_deref())
        .text(&c.actor.to_string())
        .time(c.checked_at)
        .time(c.checked_at)
        .defer(&mut self.conn()?, None)
        .await;
        self.track(result)
    }
}

/// Binds the columns update and insert both write, `number` to `registered_at`.
fn bind_licence<'a>(statement: Statement<'a>, l: &'a Licence) -> Statement<'a> {
    statement
        .text(&l.number)
        .time(day(l.expires_on))
        .text(l.status.as_str())
        .opt_text(l.status_reason.as_deref())
        .time(l.last_verified_at)
        .time(l.registered_at)
}

/// Replaces the member's licence, or inserts it when there is none (the caller holds the
/// member's lock, so no one else inserts it meanwhile).
async fn save(conn: &mut impl SqlConn, l: &Licence) -> Result<(), StoreError> {
    let update = sql(
        "update licences set number = ?, expires_on = ?, status = ?, status_reason = ?, last_verified_at = ?, \
         registered_at = ?, updated_at = ? where member_id = ?",
    );
    let updated = bind_licence(update, l)
        .time(l.updated_at)
        .id(l.member_id)
        .execute(&mut *conn)
        .await?;
    if updated > 0 {
        return Ok(());
    }
    let insert = sql(
        "insert into licences (number, expires_on, status, status_reason, last_verified_at, registered_at, \
         member_id, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    let inserted = bind_licence(insert, l)
        .id(l.member_id)
        .time(l.registered_at)
        .time(l.updated_at)
        .execute(conn)
        .await?;
    require_row(inserted, "licence", l.member_id)
}

#[async_trait]
impl<B: Backend> LicenceReads for SqlStore<B> {
    async fn licence(&self, member_id: MemberId, consistency: Consistency) -> Result<Option<Licence>, StoreError> {
        self.read(&consistency, member_id, |conn, &member_id| {
            Box::pin(by_member(member_id, Lock::None).fetch_optional(conn, licence))
        })
        .await
    }

    async fn licence_checks(
        &self,
        member_id: MemberId,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<LicenceCheck>, StoreError> {
        self.read(&consistency, (member_id, limit), |conn, &(member_id, limit)| {
            Box::pin(
                sql("select * from licence_checks where member_id = ? order by checked_at desc, id desc limit ?")
                    .id(member_id)
                    .limit(limit)
                    .fetch_all(conn, licence_check),
            )
        })
        .await
    }

    async fn due_licences(
        &self,
        cutoffs: &DueCutoffs,
        after: Option<MemberId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<Licence>, StoreError> {
        self.read(
            &consistency,
            (*cutoffs, after, limit),
            |conn, &(cutoffs, after, limit)| Box::pin(due_statement(&cutoffs, after, limit).fetch_all(conn, licence)),
        )
        .await
    }

    async fn count_due_licences(
        &self,
        cutoffs: &DueCutoffs,
        after: Option<MemberId>,
        consistency: Consistency,
    ) -> Result<i64, StoreError> {
        self.read(&consistency, (*cutoffs, after), |conn, &(cutoffs, after)| {
            Box::pin(
                sql("select count(*) as n from licences where status = 'valid' \
                     and (expires_on <= ? or last_verified_at <= ?) and member_id > ?")
                .time(day(cutoffs.expires_by))
                .time(cutoffs.verified_before)
                .after_id(after)
                .fetch_one(conn, |row| row.int("n")),
            )
        })
        .await
    }
}
