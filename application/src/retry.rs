//! Running a unit of work again when it lost a race. A [`ports::StoreError::Concurrency`] (a
//! serialization failure, a deadlock, a stale policy version, SQLite's busy database) means
//! nothing of the attempt was committed and another transaction won: a use case whose whole
//! unit of work re-reads what it acts on can simply run again. Bounded, with a short pause
//! that grows, so a hot row does not become a busy loop.

use std::future::Future;
use std::time::Duration;

/// Attempts in all, the first included.
pub(crate) const MAX_ATTEMPTS: u32 = 3;

/// The pause before the second attempt; doubled before each later one.
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// A use-case error that may say "a concurrent transaction won".
pub(crate) trait LostRace {
    fn lost_race(&self) -> bool;
}

/// Runs `attempt` until it succeeds, fails otherwise than by a lost race, or has run
/// [`MAX_ATTEMPTS`] times; the last outcome is returned.
pub(crate) async fn on_lost_race<T, E, F, Fut>(mut attempt: F) -> Result<T, E>
where
    E: LostRace,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = FIRST_PAUSE;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if e.lost_race() && tries < MAX_ATTEMPTS => {
                tracing::debug!(
                    attempt = tries,
                    "a concurrent transaction won; running the unit of work again"
                );
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}
