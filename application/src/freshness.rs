//! Read-your-writes for members: after a member's write commits, its commit token is
//! remembered for a short window and that member's reads demand a replica that has
//! replayed it. Other reads stay `Eventual`, so replicas keep the bulk of the load.

use std::sync::Arc;

use core_domain::MemberId;
use ports::{CommitToken, Consistency, ConsistencyTokens, StoreError, UnitOfWork};

/// Each member's read consistency: read-your-writes while their last commit is recent.
#[derive(Clone)]
pub struct Freshness {
    tokens: Arc<dyn ConsistencyTokens>,
}

impl Freshness {
    /// Over the member's remembered commit tokens.
    pub fn new(tokens: Arc<dyn ConsistencyTokens>) -> Self {
        Self { tokens }
    }

    /// The consistency for a read on behalf of `member_id`: their last write if recent,
    /// else `Eventual`; `Strong` when the token store cannot be asked (never stale).
    pub async fn for_member(&self, member_id: MemberId) -> Consistency {
        match self.tokens.recall(member_id).await {
            Ok(Some(token)) => Consistency::ReadYourWrites(token),
            Ok(None) => Consistency::Eventual,
            Err(error) => {
                tracing::debug!(%error, "consistency token store unavailable; reading from the primary");
                Consistency::Strong
            }
        }
    }

    /// Remembers `token` as `member_id`'s last write (logged, not returned, on failure).
    pub async fn remember(&self, member_id: MemberId, token: &CommitToken) {
        if let Err(error) = self.tokens.remember(member_id, token).await {
            // Debug: during a token-store outage this happens on every write, and the
            // store's adapter already warns once per outage.
            tracing::debug!(%error, %member_id, "could not remember commit token");
        }
    }

    /// Commits `uow` and remembers the token for `member_id`. A failure to remember is
    /// logged, not returned: the write itself has committed.
    pub async fn commit(&self, uow: &mut dyn UnitOfWork, member_id: MemberId) -> Result<CommitToken, StoreError> {
        let token = uow.commit().await?;
        if let Err(error) = self.tokens.remember(member_id, &token).await {
            // Debug, not warn: during an outage of the token store this happens on every
            // write, and the store's adapter already warns once per outage.
            tracing::debug!(%error, %member_id, "could not remember commit token");
        }
        Ok(token)
    }
}
