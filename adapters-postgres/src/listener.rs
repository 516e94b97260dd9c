//! The outbox listener: a transaction that appended outbox rows also runs `pg_notify` on
//! `hexride_outbox` (delivered on commit, dropped on rollback), and every instance listens,
//! so relays everywhere wake at once instead of polling.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{Notify, watch};

use crate::OUTBOX_CHANNEL;

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
