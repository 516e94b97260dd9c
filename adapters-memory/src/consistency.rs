//! Each member's last commit token, kept in process memory for a short window. With one
//! instance every read passes through this process, so a local map is enough for
//! read-your-writes; a cluster uses the Redis adapter instead.

use std::time::Duration;

use async_trait::async_trait;
use core_domain::MemberId;
use ports::{CacheError, CommitToken, ConsistencyTokens};

/// At most this many members' tokens are kept. Only members who wrote within the window
/// are present, so the bound is far above normal use; an evicted token makes that member's
/// next read eventual rather than read-your-writes.
pub const MAX_MEMBERS: u64 = 1_000_000;

/// [`ports::ConsistencyTokens`] over a moka cache whose entries live for the window.
#[derive(Clone)]
pub struct MemoryConsistencyTokens {
    tokens: moka::future::Cache<MemberId, CommitToken>,
}

impl MemoryConsistencyTokens {
    /// Tokens are recalled for `window` after they were last remembered.
    pub fn new(window: Duration) -> Self {
        Self {
            tokens: moka::future::Cache::builder()
                .max_capacity(MAX_MEMBERS)
                .time_to_live(window)
                .build(),
        }
    }
}

impl std::fmt::Debug for MemoryConsistencyTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryConsistencyTokens")
            .field("members", &self.tokens.entry_count())
            .finish()
    }
}

#[async_trait]
impl ConsistencyTokens for MemoryConsistencyTokens {
    async fn remember(&self, member_id: MemberId, token: &CommitToken) -> Result<(), CacheError> {
        self.tokens.insert(member_id, token.clone()).await;
        Ok(())
    }

    async fn recall(&self, member_id: MemberId) -> Result<Option<CommitToken>, CacheError> {
        Ok(self.tokens.get(&member_id).await)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[tokio::test]
    async fn the_last_token_is_recalled_within_the_window() {
        let tokens = MemoryConsistencyTokens::new(Duration::from_secs(5));
        let member = MemberId(Uuid::now_v7());
        tokens.remember(member, &CommitToken("1".into())).await.unwrap();
        tokens.remember(member, &CommitToken("2".into())).await.unwrap();
        assert_eq!(tokens.recall(member).await, Ok(Some(CommitToken("2".into()))));
        assert_eq!(tokens.recall(MemberId(Uuid::now_v7())).await, Ok(None));
    }

    #[tokio::test]
    async fn a_token_is_forgotten_after_the_window() {
        let tokens = MemoryConsistencyTokens::new(Duration::from_millis(50));
        let member = MemberId(Uuid::now_v7());
        tokens.remember(member, &CommitToken("1".into())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(tokens.recall(member).await, Ok(None));
    }
}
