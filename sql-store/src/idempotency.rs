//! Idempotency keys: a money-moving request reserves its key in the transaction that does
//! the work and stores its response there, so a retry finds the response or waits for the
//! first attempt to end.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::MemberId;
use ports::{
    Claim, Consistency, IdempotencyReads, IdempotencyRecord, IdempotencyStart, IdempotencyWrites, KeyClaim, StoreError,
};

use crate::Columns;
use crate::backend::Backend;
use crate::members;
use crate::sql::{Lock, SqlConn, Statement, sql};
use crate::{SqlStore, SqlUnitOfWork};

/// The `fingerprint` and `response` of an `idempotency_keys` row: a key used before.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn idempotency_record(row: &impl Columns) -> Result<IdempotencyRecord, StoreError> {
    Ok(IdempotencyRecord {
        fingerprint: row.text("fingerprint")?,
        response: row.opt_text("response")?,
    })
}

async fn record(conn: &mut impl SqlConn, scope: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
    sql("select fingerprint, response from idempotency_keys where scope = ? and request_key = ?")
        .text(scope)
        .text(key)
        .fetch_optional(conn, idempotency_record)
        .await
}

/// The insert that reserves a key, or inserts nothing where it is taken.
fn reserve<'a>(scope: &'a str, key: &'a str, fingerprint: &'a str) -> Statement<'a> {
    let now = OffsetDateTime::now_utc();
    sql(
        "insert into idempotency_keys (scope, request_key, fingerprint, response, created_at, updated_at) \
         values (?, ?, ?, null, ?, ?) {skip_duplicate}",
    )
    .text(scope)
    .text(key)
    .text(fingerprint)
    .time(now)
    .time(now)
}

/// After a [`reserve`] that inserted nothing: the earlier request's row.
async fn seen(conn: &mut impl SqlConn, scope: &str, key: &str) -> Result<IdempotencyRecord, StoreError> {
    record(conn, scope, key)
        .await?
        .ok_or_else(|| StoreError::other(format!("idempotency key {scope}/{key} neither inserted nor found")))
}

/// Insert-or-ignore, then read: the row is either ours (new) or an earlier request's. An
/// insert of a key another open transaction has inserted waits for it to end (SQLite: the
/// single writer already excludes it): after its commit this reads its row (a statement of
/// its own, which sees that commit), after its rollback the key is ours.
pub(crate) async fn begin(
    conn: &mut impl SqlConn,
    scope: &str,
    key: &str,
    fingerprint: &str,
) -> Result<IdempotencyStart, StoreError> {
    if reserve(scope, key, fingerprint)
        .insert_unless_duplicate(&mut *conn)
        .await?
    {
        return Ok(IdempotencyStart::New);
    }
    Ok(IdempotencyStart::Seen(seen(conn, scope, key).await?))
}

/// [`begin`] and the member locked for change, in one round trip where the dialect can
/// ([`Statement::insert_unless_duplicate_then`]). The reservation goes first, so a retry
/// waits for the attempt that holds its key before it asks for the member's lock, as with
/// two statements.
pub(crate) async fn claim_for_member(
    conn: &mut impl SqlConn,
    claim: Option<KeyClaim<'_>>,
    member_id: MemberId,
) -> Result<Claim, StoreError> {
    let member = members::by_id_statement(member_id, Lock::ForUpdate);
    let Some(KeyClaim {
        scope,
        key,
        fingerprint,
    }) = claim
    else {
        return Ok(Claim::Member(member.fetch_optional(conn, members::member).await?));
    };
    let (inserted, member) = reserve(scope, key, fingerprint)
        .insert_unless_duplicate_then(&mut *conn, member, members::member)
        .await?;
    if inserted {
        return Ok(Claim::Member(member));
    }
    Ok(Claim::Seen(seen(conn, scope, key).await?))
}

/// Stores the response under a key reserved by [`begin`].
pub(crate) async fn complete(
    conn: &mut impl SqlConn,
    scope: &str,
    key: &str,
    response: &str,
) -> Result<(), StoreError> {
    sql("update idempotency_keys set response = ?, updated_at = ? where scope = ? and request_key = ?")
        .text(response)
        .time(OffsetDateTime::now_utc())
        .text(scope)
        .text(key)
        .defer(conn, Some(format!("idempotency key {scope}/{key}")))
        .await
}

#[async_trait]
impl<B: Backend> IdempotencyWrites for SqlUnitOfWork<B> {
    async fn begin(&mut self, scope: &str, key: &str, fingerprint: &str) -> Result<IdempotencyStart, StoreError> {
        let result = begin(&mut self.conn()?, scope, key, fingerprint).await;
        self.track(result)
    }

    async fn complete(&mut self, scope: &str, key: &str, response: &str) -> Result<(), StoreError> {
        let result = complete(&mut self.conn()?, scope, key, response).await;
        self.track(result)
    }
}

#[async_trait]
impl<B: Backend> IdempotencyReads for SqlStore<B> {
    async fn idempotency_record(
        &self,
        scope: &str,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let args = (scope.to_owned(), key.to_owned());
        self.read(&consistency, args, |conn, (scope, key)| {
            Box::pin(record(conn, scope, key))
        })
        .await
    }
}
