//! Point wallets and their ledger. Balances change only in single conditional statements,
//! so their bounds hold under any concurrency.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::wallet::LedgerEntry;
use core_domain::{Krw, MemberId};
use ports::{Consistency, LedgerKey, Page, PageRequest, StoreError, TimeKey, WalletReads, WalletWrites};

use crate::SqlUnitOfWork;
use crate::backend::Backend;
use crate::sql::{SqlConn, Statement, sql};
use crate::{Columns, SqlStore};

/// A `wallet_ledger` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn ledger_entry(row: &impl Columns) -> Result<LedgerEntry, StoreError> {
    Ok(LedgerEntry {
        id: row.id("id")?,
        member_id: row.id("member_id")?,
        kind: row.parsed("kind")?,
        amount: row.int("amount")?,
        balance_after: row.int("balance_after")?,
        reference: row.opt_uuid("reference")?,
        created_at: row.time("created_at")?,
    })
}

/// Adds `amount` if the balance stays `<= max_balance`, creating the wallet if there is none;
/// the new balance, or `None` when it would exceed the maximum. One upsert where the dialect
/// returns rows from an update (PostgreSQL and SQLite also do from `insert … on conflict …
/// do update`); elsewhere the wallet is created at 0 first (a queued write) and then
/// credited.
pub(crate) async fn credit_points(
    conn: &mut impl SqlConn,
    member_id: MemberId,
    amount: Krw,
    max_balance: Krw,
) -> Result<Option<Krw>, StoreError> {
    if amount > max_balance {
        // No balance can take it, a new wallet's 0 included.
        return Ok(None);
    }
    let now = OffsetDateTime::now_utc();
    if conn.dialect().update_returning {
        return sql(
            "insert into wallets (member_id, balance, created_at, updated_at) values (?, ?, ?, ?) \
             on conflict (member_id) do update set balance = wallets.balance + excluded.balance, \
             updated_at = excluded.updated_at where wallets.balance + excluded.balance <= ? \
             returning balance",
        )
        .id(member_id)
        .int(amount)
        .time(now)
        .time(now)
        .int(max_balance)
        .fetch_optional(conn, |row| row.int("balance"))
        .await;
    }
    sql(
        "insert into wallets (member_id, balance, created_at, updated_at) values (?, 0, ?, ?) \
         {keep_existing}",
    )
    .id(member_id)
    .time(now)
    .time(now)
    .defer(&mut *conn, None)
    .await?;
    sql("update wallets set balance = balance + ?, updated_at = ? \
         where member_id = ? and balance + ? <= ?")
    .int(amount)
    .time(now)
    .id(member_id)
    .int(amount)
    .int(max_balance)
    .update_returning(conn, "balance", balance_of(member_id), |row| row.int("balance"))
    .await
}

/// The `balance` of the member's wallet row, if any.
fn balance_of<'a>(member_id: MemberId) -> Statement<'a> {
    sql("select balance from wallets where member_id = ?").id(member_id)
}

/// Takes `amount` if the balance stays `>= 0`; the new balance, or `None` otherwise (or
/// without a wallet).
pub(crate) async fn debit_points(
    conn: &mut impl SqlConn,
    member_id: MemberId,
    amount: Krw,
) -> Result<Option<Krw>, StoreError> {
    sql("update wallets set balance = balance - ?, updated_at = ? \
         where member_id = ? and balance >= ?")
    .int(amount)
    .time(OffsetDateTime::now_utc())
    .id(member_id)
    .int(amount)
    .update_returning(conn, "balance", balance_of(member_id), |row| row.int("balance"))
    .await
}

/// 0 for a member without a wallet yet.
pub(crate) async fn balance(conn: &mut impl SqlConn, member_id: MemberId) -> Result<Krw, StoreError> {
    let balance = balance_of(member_id)
        .fetch_optional(conn, |row| row.int("balance"))
        .await?;
    Ok(balance.unwrap_or(0))
}

pub(crate) async fn insert_ledger(conn: &mut impl SqlConn, e: &LedgerEntry) -> Result<(), StoreError> {
    sql(
        "insert into wallet_ledger (id, member_id, kind, amount, balance_after, reference, created_at) \
         values (?, ?, ?, ?, ?, ?, ?)",
    )
    .id(e.id)
    .id(e.member_id)
    .text(e.kind.as_str())
    .int(e.amount)
    .int(e.balance_after)
    .opt_id(e.reference)
    .time(e.created_at)
    .defer(conn, None)
    .await
}

/// One page, newest first (rows of the same instant: last inserted first).
pub(crate) async fn ledger(
    conn: &mut impl SqlConn,
    member_id: MemberId,
    page: &PageRequest<LedgerKey>,
) -> Result<Page<LedgerEntry, LedgerKey>, StoreError> {
    let rows = sql("select * from wallet_ledger where member_id = ? \
                    and (created_at < ? or (created_at = ? and seq < ?)) \
                    order by created_at desc, seq desc limit ?")
    .id(member_id)
    .before_seq_key(page.after.as_ref())
    .limit(page.probe())
    .fetch_all(conn, |row| Ok((ledger_entry(row)?, row.int("seq")?)))
    .await?;
    Ok(Page::from_probe(rows, page, |(entry, seq)| {
        let key = TimeKey {
            at: entry.created_at,
            tie: seq,
        };
        (entry, key)
    }))
}

#[async_trait]
impl<B: Backend> WalletWrites for SqlUnitOfWork<B> {
    async fn credit_points(
        &mut self,
        member_id: MemberId,
        amount: Krw,
        max_balance: Krw,
    ) -> Result<Option<Krw>, StoreError> {
        let result = credit_points(&mut self.conn()?, member_id, amount, max_balance).await;
        self.track(result)
    }

    async fn debit_points(&mut self, member_id: MemberId, amount: Krw) -> Result<Option<Krw>, StoreError> {
        let result = debit_points(&mut self.conn()?, member_id, amount).await;
        self.track(result)
    }

    async fn insert_ledger(&mut self, entry: &LedgerEntry) -> Result<(), StoreError> {
        let result = insert_ledger(&mut self.conn()?, entry).await;
        self.track(result)
    }
}

#[async_trait]
impl<B: Backend> WalletReads for SqlStore<B> {
    async fn balance(&self, member_id: MemberId, consistency: Consistency) -> Result<Krw, StoreError> {
        self.read(&consistency, member_id, |conn, &member_id| {
            Box::pin(balance(conn, member_id))
        })
        .await
    }

    async fn ledger(
        &self,
        member_id: MemberId,
        page: &PageRequest<LedgerKey>,
        consistency: Consistency,
    ) -> Result<Page<LedgerEntry, LedgerKey>, StoreError> {
        self.read(&consistency, (member_id, page.clone()), |conn, (member_id, page)| {
            Box::pin(ledger(conn, *member_id, page))
        })
        .await
    }
}
