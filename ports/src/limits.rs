//! Load shedding: rate limits, and the first-come-first-served coupon gate.

use std::time::Duration;

use async_trait::async_trait;

use core_domain::{CampaignId, MemberId};

/// At most `limit` calls per `period` per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Calls allowed per period.
    pub limit: u32,
    /// The window the limit applies to.
    pub period: Duration,
}

/// What a rate limiter decided about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Within the quota.
    Allowed,
    /// Over it.
    Limited {
        /// When a call would be allowed again.
        retry_after: Duration,
    },
}

/// Why a rate limiter could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimiterError {
    /// Its backend cannot be reached.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
}

/// Rate limiting shared by every instance that uses the same backend.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one call against `key` under `quota`.
    ///
    /// # Errors
    /// [`LimiterError::Unavailable`] when the backend cannot be reached; the caller decides
    /// whether to fail open or closed.
    async fn check(&self, key: &str, quota: Quota) -> Result<RateDecision, LimiterError>;
}

/// What the coupon gate decided about one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateDecision {
    /// Go on to the database, which has the last word.
    Admitted,
    /// As many were admitted as the campaign has coupons.
    SoldOut,
    /// The member was admitted before.
    AlreadyIssued,
}

/// Why the coupon gate could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// Its backend cannot be reached.
    #[error("coupon gate unavailable: {0}")]
    Unavailable(String),
}

/// Sheds first-come-first-served load in front of the database. It may admit more than the
/// database will issue (after a restart, say) but the database never issues more than
/// `total_quantity`.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CouponGate: Send + Sync {
    /// Admits `member` to `campaign` if fewer than `total_quantity` were admitted and the
    /// member was not admitted before.
    ///
    /// # Errors
    /// [`GateError::Unavailable`]: the caller falls back to the database's atomic path.
    async fn try_acquire(
        &self,
        campaign_id: CampaignId,
        member_id: MemberId,
        total_quantity: i64,
    ) -> Result<GateDecision, GateError>;
    /// Gives back an admitted slot whose database issue failed.
    ///
    /// # Errors
    /// [`GateError::Unavailable`] when the gate cannot be reached.
    async fn release(&self, campaign_id: CampaignId, member_id: MemberId) -> Result<(), GateError>;
}
