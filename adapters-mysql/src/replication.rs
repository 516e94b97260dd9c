//! MySQL's and MariaDB's GTID replication, for the shared router: a commit token is a GTID
//! position (MariaDB) or set (MySQL); a replica reports whether both replication threads
//! run, how far it has applied, and how old the heartbeat row it has applied is.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{MySqlConnection, Row as _};

use ports::{CommitToken, StoreError};
use sql_store::routing::{Probe, Replication};

use crate::conn::MysqlDialect;
use crate::gtid::{Flavour, Position};
use crate::translate;

/// The primary's heartbeat: its clock, in the row replicas measure their lag by.
pub(crate) const HEARTBEAT_SQL: &str = "insert into replication_heartbeat (id, beat_at) values (1, utc_timestamp(6)) \
     on duplicate key update beat_at = utc_timestamp(6)";

/// How old the applied heartbeat is, in microseconds (on the replica's clock, which is the
/// primary's where both run on one machine or under NTP).
const LAG_SQL: &str = "select timestampdiff(microsecond, beat_at, utc_timestamp(6)) as lag_us \
     from replication_heartbeat where id = 1";

/// MySQL's and MariaDB's [`Replication`].
#[derive(Debug, Clone, Copy)]
pub struct MysqlReplication {
    flavour: Flavour,
}

impl MysqlReplication {
    /// For a server of `flavour`.
    pub fn new(flavour: Flavour) -> Self {
        Self { flavour }
    }

    /// What the replica's applied position is read with.
    fn position_sql(self) -> &'static str {
        match self.flavour {
            Flavour::MariaDb => "select @@gtid_slave_pos",
            Flavour::MySql => "select @@global.gtid_executed",
        }
    }

    /// Names of the replica-status statement and its thread columns.
    fn status_sql(self) -> (&'static str, &'static str, &'static str) {
        match self.flavour {
            Flavour::MariaDb => ("show slave status", "Slave_IO_Running", "Slave_SQL_Running"),
            Flavour::MySql => ("show replica status", "Replica_IO_Running", "Replica_SQL_Running"),
        }
    }
}

#[async_trait]
impl Replication for MysqlReplication {
    type Dialect = MysqlDialect;
    type Position = Position;

    fn parse(&self, token: &CommitToken) -> Option<Position> {
        self.flavour.parse(&token.0)
    }

    fn covers(&self, have: &Position, wanted: &Position) -> bool {
        have.covers(wanted)
    }

    async fn probe(&self, conn: &mut MySqlConnection) -> Result<Probe<Position>, StoreError> {
        let (status_sql, io_column, sql_column) = self.status_sql();
        let status = sqlx::query(status_sql)
            .fetch_optional(&mut *conn)
            .await
            .map_err(translate)?;
        let Some(status) = status else {
            return Ok(Probe {
                problem: Some(format!("not a replica: `{status_sql}` is empty")),
                position: None,
                lag: None,
            });
        };
        let io: String = status.try_get(io_column).map_err(translate)?;
        let sql: String = status.try_get(sql_column).map_err(translate)?;
        let position: String = sqlx::query_scalar(self.position_sql())
            .fetch_one(&mut *conn)
            .await
            .map_err(translate)?;
        let position = self.flavour.parse(&position);
        if io != "Yes" || sql != "Yes" {
            // A stopped SQL thread applies nothing: the heartbeat's age would only say how
            // long ago it stopped. Lag unknown.
            return Ok(Probe {
                problem: Some(format!("replication stopped (IO thread: {io}, SQL thread: {sql})")),
                position,
                lag: None,
            });
        }
        let lag_us: Option<Option<i64>> = sqlx::query_scalar(LAG_SQL)
            .fetch_optional(&mut *conn)
            .await
            .map_err(translate)?;
        let lag = lag_us
            .flatten()
            // A replica clock a little behind the primary's gives a negative age.
            .map(|us| Duration::from_micros(u64::try_from(us.max(0)).unwrap_or(0)));
        Ok(Probe {
            problem: None,
            position,
            lag,
        })
    }

    /// One round trip: the server waits (MariaDB `master_gtid_wait`, MySQL
    /// `wait_for_executed_gtid_set`, whose timeout 0 would mean "forever", so a zero wait
    /// asks [`Replication::applied`] instead).
    async fn wait_applied(
        &self,
        conn: &mut MySqlConnection,
        position: &Position,
        wait: Duration,
    ) -> Result<bool, StoreError> {
        if wait.is_zero() {
            return self.applied(conn, position).await;
        }
        let sql = match self.flavour {
            Flavour::MariaDb => "select cast(master_gtid_wait(?, ?) as signed)",
            Flavour::MySql => "select cast(wait_for_executed_gtid_set(?, ?) as signed)",
        };
        let outcome: Option<i64> = sqlx::query_scalar(sql)
            .bind(position.to_string())
            .bind(wait.as_secs_f64())
            .fetch_one(conn)
            .await
            .map_err(translate)?;
        Ok(outcome == Some(0))
    }

    async fn applied(&self, conn: &mut MySqlConnection, position: &Position) -> Result<bool, StoreError> {
        let sql = match self.flavour {
            // Timeout 0: only checks.
            Flavour::MariaDb => "select cast(master_gtid_wait(?, 0) = 0 as signed)",
            Flavour::MySql => "select cast(gtid_subset(?, @@global.gtid_executed) as signed)",
        };
        let applied: Option<i64> = sqlx::query_scalar(sql)
            .bind(position.to_string())
            .fetch_one(conn)
            .await
            .map_err(translate)?;
        Ok(applied == Some(1))
    }
}
