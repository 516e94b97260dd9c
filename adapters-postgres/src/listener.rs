//! Outbox wake-ups across instances: after commits that appended outbox rows, an instance
//! sends one `pg_notify` on `hexride_outbox` ([`announce`]), and every instance listens
//! ([`listen`]), so relays everywhere wake at once instead of polling.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{Notify, watch};

use sql_store::Conns;
use sql_store::sql::sql;

use crate::{OUTBOX_CHANNEL, PgConn, translate};

/// How long the listener waits before reconnecting after it lost the primary.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

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

/// Sends one `pg_notify` on `hexride_outbox` per wake-up of `appended` (this instance's
/// commits that appended outbox rows, however many since the last one), on a connection of
/// the primary's pool outside any transaction, until `shutdown`. Other instances' relays
/// then wake a round trip after the commits, and the commits themselves stay clear of
/// PostgreSQL's notification queue, whose lock a notifying transaction holds through its
/// commit (one notifying commit at a time). A notification that cannot be sent is not
/// retried: the other relays find the rows when they next poll.
pub(crate) async fn announce(primary: Conns<Postgres>, appended: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = appended.notified() => {}
            _ = shutdown.changed() => return,
        }
        let sent = async {
            let mut conn = PgConn::new(primary.acquire().await.map_err(translate)?);
            sql("select pg_notify(?, '')")
                .text(OUTBOX_CHANNEL)
                .execute(&mut conn)
                .await
        }
        .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "could not tell other instances of new outbox rows; their relays poll");
        }
    }
}
