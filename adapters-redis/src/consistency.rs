//! Each member's last commit token in Redis, so read-your-writes holds whichever instance
//! serves the member's next read. A key per member, expiring with the window.

use std::time::Duration;

use async_trait::async_trait;
use core_domain::MemberId;
use ports::{CacheError, CommitToken, ConsistencyTokens};

use crate::conn::{RedisConn, millis};

/// [`ports::ConsistencyTokens`] over Redis `SET PX` / `GET`.
#[derive(Debug, Clone)]
pub struct RedisConsistencyTokens {
    conn: RedisConn,
    window: Duration,
}

impl RedisConsistencyTokens {
    /// Tokens are recalled for `window` after they were last remembered.
    pub fn new(conn: RedisConn, window: Duration) -> Self {
        Self { conn, window }
    }

    fn key(&self, member_id: MemberId) -> String {
        self.conn.key("ryw", member_id, "")
    }
}

#[async_trait]
impl ConsistencyTokens for RedisConsistencyTokens {
    async fn remember(&self, member_id: MemberId, token: &CommitToken) -> Result<(), CacheError> {
        self.conn
            .query::<()>(
                redis::cmd("SET")
                    .arg(self.key(member_id))
                    .arg(&token.0)
                    .arg("PX")
                    .arg(millis(self.window)),
            )
            .await
            .map_err(|failure| CacheError::Unavailable(failure.0))
    }

    async fn recall(&self, member_id: MemberId) -> Result<Option<CommitToken>, CacheError> {
        self.conn
            .query::<Option<String>>(redis::cmd("GET").arg(self.key(member_id)))
            .await
            .map(|token| token.map(CommitToken))
            .map_err(|failure| CacheError::Unavailable(failure.0))
    }
}
