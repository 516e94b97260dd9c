//! Connections that go back to work without a round trip. sqlx pings every connection that
//! comes back to its pool (a `Sync` and its answer, from a task of its own; no option turns
//! it off), so each unit of work and each read cost the server one more wake-up. [`Conns`]
//! keeps the connections its users hand back in good order on a stack of its own, out of the
//! pool, and hands them out again first; sqlx still opens, pings and closes every other one.
//!
//! A connection is in good order when no statement of it was cut short: [`Leased`] is told
//! when a statement starts and ends ([`Leased::start`], [`Leased::settled`]), and one dropped in between (its
//! future was cancelled) goes back to the pool, which pings it, as before. A caller that knows
//! a connection's state is unknown (a rollback failed) [`spoils`](Leased::spoil) it, and
//! it is closed.
//!
//! The stack is invisible to the pool, so a caller waiting in the pool while connections sit
//! on the stack would wait in vain. Callers therefore queue in front of both, for one of as
//! many permits as the pool has connections (first come, first served): a caller with a
//! permit takes the stack's connection, or, when the stack is empty, one from the pool, which
//! then always has one to give (every connection it has handed out is held by a caller with a
//! permit or lies on the stack). A connection goes on the stack before its permit is given
//! back, so under load it passes straight to the next caller, unpinged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::driver::IDLE_PING_AFTER;

/// A pool of driver `DB`'s connections with a stack of connections in good order in front.
pub struct Conns<DB: Database> {
    pool: Pool<DB>,
    stack: Arc<Stack<DB>>,
    /// One per connection the pool may open.
    permits: Arc<Semaphore>,
}

struct Stack<DB: Database> {
    /// Connections handed back in good order, the most recent last, with when.
    idle: Mutex<Vec<(PoolConnection<DB>, Instant)>>,
    /// Once the pool closes, nothing stays on the stack (the pool waits for every
    /// connection to come back).
    closed: AtomicBool,
}

impl<DB: Database> Clone for Conns<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            stack: Arc::clone(&self.stack),
            permits: Arc::clone(&self.permits),
        }
    }
}

impl<DB: Database> std::fmt::Debug for Conns<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conns")
            .field("pool_size", &self.pool.size())
            .field("stacked", &self.stack.len())
            .finish()
    }
}

impl<DB: Database> Stack<DB> {
    fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The most recent connection handed back, if it is still fresh; older ones go back to
    /// the pool, which pings them before anyone gets them.
    fn pop(&self) -> Option<PoolConnection<DB>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let (conn, since) = idle.pop()?;
        if since.elapsed() < IDLE_PING_AFTER {
            return Some(conn);
        }
        // The rest are older still.
        let stale: Vec<_> = idle.drain(..).collect();
        drop(idle);
        drop(conn);
        drop(stale);
        None
    }

    fn push(&self, conn: PoolConnection<DB>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if self.closed.load(Ordering::SeqCst) {
            drop(idle);
            drop(conn);
            return;
        }
        idle.push((conn, Instant::now()));
    }

    /// Empties the stack for good: its connections go back to the pool.
    fn close(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::SeqCst);
        let stacked: Vec<_> = idle.drain(..).collect();
        drop(idle);
        drop(stacked);
    }
}

impl<DB: Database> Conns<DB> {
    /// Connections of `pool`.
    pub fn new(pool: Pool<DB>) -> Self {
        let size = usize::try_from(pool.options().get_max_connections()).unwrap_or(1);
        Self {
            pool,
            stack: Arc::new(Stack {
                idle: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
            permits: Arc::new(Semaphore::new(size.max(1))),
        }
    }

    /// A connection: the last one handed back in good order, else one from the pool. Waits
    /// at most the pool's acquire timeout in all, for a permit and then for the pool.
    ///
    /// # Errors
    /// [`sqlx::Error::PoolTimedOut`] when none came in time, [`sqlx::Error::PoolClosed`]
    /// once closed, or the pool's error opening a connection.
    pub async fn acquire(&self) -> Result<Leased<DB>, sqlx::Error> {
        let deadline = tokio::time::Instant::now() + self.pool.options().get_acquire_timeout();
        let permit = match tokio::time::timeout_at(deadline, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(sqlx::Error::PoolClosed),
            Err(_elapsed) => return Err(sqlx::Error::PoolTimedOut),
        };
        let conn = match self.stack.pop() {
            Some(conn) => conn,
            None => tokio::time::timeout_at(deadline, self.pool.acquire())
                .await
                .map_err(|_elapsed| sqlx::Error::PoolTimedOut)??,
        };
        Ok(Leased {
            conn: Some(conn),
            stack: Arc::clone(&self.stack),
            busy: false,
            spoilt: false,
            _permit: permit,
        })
    }

    /// The pool, for what runs outside the hot paths (migrations, tests).
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Closes the pool, once the connections on the stack and in use are back.
    pub async fn close(&self) {
        self.permits.close();
        self.stack.close();
        self.pool.close().await;
    }
}

/// A connection from [`Conns`]. Dropped, it goes on the stack if it is in good order, else
/// back to the pool (pinged there) or, spoilt, closed.
pub struct Leased<DB: Database> {
    conn: Option<PoolConnection<DB>>,
    stack: Arc<Stack<DB>>,
    /// A statement started and has not ended.
    busy: bool,
    spoilt: bool,
    /// Given back after the connection (fields drop after `drop` ran).
    _permit: OwnedSemaphorePermit,
}

impl<DB: Database> Leased<DB> {
    /// The driver's connection, for a statement that starts now: until
    /// [`settled`](Self::settled), a drop means the statement was cut short.
    ///
    /// # Errors
    /// [`sqlx::Error::PoolClosed`] once handed back (only `drop` does that).
    pub fn start(&mut self) -> Result<&mut DB::Connection, sqlx::Error> {
        self.busy = true;
        self.conn.as_deref_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// The statement started last has ended well: the connection is in good order.
    pub fn settled(&mut self) {
        self.busy = false;
    }

    /// The connection's state is unknown: it is closed when dropped.
    pub fn spoil(&mut self) {
        self.spoilt = true;
        if let Some(conn) = &mut self.conn {
            conn.close_on_drop();
        }
    }
}

impl<DB: Database> Drop for Leased<DB> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.busy || self.spoilt {
            // To the pool, which pings it (and closes it if that fails), or closed if spoilt.
            drop(conn);
            return;
        }
        self.stack.push(conn);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::{Connection as _, Sqlite};

    use super::*;

    /// A pool of one in-memory SQLite connection, so every hand-over is visible.
    async fn one_connection(acquire_timeout: Duration) -> Conns<Sqlite> {
        let pool = crate::driver::pool_options::<Sqlite>(1, acquire_timeout)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        Conns::new(pool)
    }

    #[tokio::test]
    async fn a_connection_in_good_order_goes_on_the_stack_and_out_first() {
        let conns = one_connection(Duration::from_secs(2)).await;
        let mut leased = conns.acquire().await.unwrap();
        leased.start().unwrap().ping().await.unwrap();
        leased.settled();
        drop(leased);
        assert_eq!(conns.stack.len(), 1);
        // The pool still counts it as taken: only the stack can hand it out.
        assert_eq!(conns.pool().num_idle(), 0);
        let again = conns.acquire().await.unwrap();
        assert_eq!(conns.stack.len(), 0);
        drop(again);
        assert_eq!(conns.stack.len(), 1);
    }

    #[tokio::test]
    async fn a_connection_dropped_mid_statement_or_spoilt_goes_back_to_the_pool() {
        let conns = one_connection(Duration::from_secs(2)).await;
        let mut leased = conns.acquire().await.unwrap();
        leased.start().unwrap();
        drop(leased);
        assert_eq!(conns.stack.len(), 0);
        let mut leased = conns.acquire().await.unwrap();
        leased.spoil();
        drop(leased);
        assert_eq!(conns.stack.len(), 0);
        // The pool opens another one in its place.
        let mut leased = conns.acquire().await.unwrap();
        leased.start().unwrap().ping().await.unwrap();
    }

    #[tokio::test]
    async fn a_waiting_caller_gets_the_next_connection_handed_back() {
        let conns = one_connection(Duration::from_secs(3)).await;
        let held = conns.acquire().await.unwrap();
        let waiter = {
            let conns = conns.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let leased = conns.acquire().await;
                (leased.is_ok(), started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "the only connection is held");
        drop(held);
        let (got, waited) = waiter.await.unwrap();
        assert!(got, "the waiter got the connection");
        assert!(waited < Duration::from_secs(2), "not after its timeout: {waited:?}");
        // The waiter handed it back in good order when it ended.
        assert_eq!(conns.stack.len(), 1);
    }

    #[tokio::test]
    async fn a_connection_idle_on_the_stack_too_long_goes_back_to_the_pool() {
        let conns = one_connection(Duration::from_secs(2)).await;
        drop(conns.acquire().await.unwrap());
        assert_eq!(conns.stack.len(), 1);
        tokio::time::sleep(IDLE_PING_AFTER + Duration::from_millis(100)).await;
        let leased = conns.acquire().await.unwrap();
        drop(leased);
        // It came from the pool (which pinged it): handed back in good order, it is stacked
        // again.
        assert_eq!(conns.stack.len(), 1);
    }

    #[tokio::test]
    async fn closing_empties_the_stack_and_keeps_it_empty() {
        let conns = one_connection(Duration::from_secs(2)).await;
        drop(conns.acquire().await.unwrap());
        let leased = conns.acquire().await.unwrap();
        conns.stack.close();
        drop(leased);
        assert_eq!(conns.stack.len(), 0);
        // The pool waits for every connection: none may be left on the stack.
        tokio::time::timeout(Duration::from_secs(5), conns.close())
            .await
            .expect("the pool closes");
        assert!(conns.pool().is_closed());
    }
}
