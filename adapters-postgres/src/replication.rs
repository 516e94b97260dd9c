//! PostgreSQL's streaming replication, for the shared router: a commit token is a WAL
//! position (LSN); a replica reports how far it has replayed and how old its last replayed
//! commit is.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgConnection, Row as _};

use ports::{CommitToken, StoreError};
use sql_store::routing::{Probe, Replication};

use crate::conn::PgDialect;
use crate::translate;

/// The replica health query. `lag_seconds` is 0 when everything received has been replayed
/// (an idle primary sends nothing, and the last replay time would then only measure the
/// idleness), else the age of the last replayed commit; NULL (unknown) when nothing was
/// replayed since the replica started.
const HEALTH_SQL: &str = "select pg_is_in_recovery() as in_recovery, \
     pg_last_wal_replay_lsn()::text as replay_lsn, \
     (case when pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() then 0 \
           else extract(epoch from now() - pg_last_xact_replay_timestamp()) end)::float8 as lag_seconds";

/// A WAL position (`pg_lsn`), as a number so positions compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(u64);

impl Lsn {
    /// Parses PostgreSQL's `XXXXXXXX/XXXXXXXX` text form.
    pub fn parse(text: &str) -> Option<Self> {
        let (high, low) = text.trim().split_once('/')?;
        let high = u32::from_str_radix(high, 16).ok()?;
        let low = u32::from_str_radix(low, 16).ok()?;
        Some(Self((u64::from(high) << 32) | u64::from(low)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// PostgreSQL's [`Replication`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PgReplication;

#[async_trait]
impl Replication for PgReplication {
    type Dialect = PgDialect;
    type Position = Lsn;

    fn parse(&self, token: &CommitToken) -> Option<Lsn> {
        Lsn::parse(&token.0)
    }

    fn covers(&self, have: &Lsn, wanted: &Lsn) -> bool {
        have >= wanted
    }

    async fn probe(&self, conn: &mut PgConnection) -> Result<Probe<Lsn>, StoreError> {
        let row = sqlx::query(HEALTH_SQL).fetch_one(conn).await.map_err(translate)?;
        let in_recovery: bool = row.try_get("in_recovery").map_err(translate)?;
        let position = row
            .try_get::<Option<String>, _>("replay_lsn")
            .map_err(translate)?
            .as_deref()
            .and_then(Lsn::parse);
        let lag = row
            .try_get::<Option<f64>, _>("lag_seconds")
            .map_err(translate)?
            .filter(|s| s.is_finite())
            // A replica clock a little ahead of the primary's gives a negative age.
            .map(|s| Duration::from_secs_f64(s.max(0.0)));
        Ok(Probe {
            problem: (!in_recovery).then(|| "not a replica: pg_is_in_recovery() is false".to_owned()),
            position,
            lag,
        })
    }

    async fn applied(&self, conn: &mut PgConnection, position: &Lsn) -> Result<bool, StoreError> {
        let replayed: Option<bool> = sqlx::query_scalar("select pg_last_wal_replay_lsn() >= $1::pg_lsn")
            .bind(position.to_string())
            .fetch_one(conn)
            .await
            .map_err(translate)?;
        Ok(replayed == Some(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_compare_and_print_like_pg_lsn() {
        let a = Lsn::parse("0/16B3748").expect("valid");
        let b = Lsn::parse("1/0").expect("valid");
        assert!(a < b);
        assert_eq!(a.to_string(), "0/16B3748");
        assert_eq!(Lsn::parse("1/A0").expect("valid").to_string(), "1/A0");
        assert_eq!(Lsn::parse("FFFFFFFF/FFFFFFFF"), Some(Lsn(u64::MAX)));
        for bad in ["", "12", "x/1", "1/", "unknown", "1/2/3"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }
}
