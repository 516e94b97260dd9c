//! Credentials and session state: refresh tokens (rotated, reuse-detected), access tokens,
//! and each member's last commit token for read-your-writes across instances.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::member::Role;
use core_domain::{MemberId, TokenFamilyId};

use crate::cache::CacheError;
use crate::store::{CommitToken, StoreError};

/// A refresh token as stored: only its SHA-256 hash, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// Hex SHA-256 of the token the client holds.
    pub token_hash: String,
    /// Whose it is.
    pub member_id: MemberId,
    /// The login it was rotated from.
    pub family_id: TokenFamilyId,
    /// After this it is invalid.
    pub expires_at: OffsetDateTime,
}

/// What a rotation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The old token is spent and the new one stored in its family.
    Rotated {
        /// Whose token it was.
        member_id: MemberId,
        /// Its family, now holding the new token.
        family_id: TokenFamilyId,
    },
    /// The old token had been spent before: its whole family is now revoked.
    Reused {
        /// Whose token it was.
        member_id: MemberId,
        /// The family now revoked.
        family_id: TokenFamilyId,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Refresh tokens with rotation and reuse detection.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when the backend cannot be reached.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// Stores a new token (a login's first).
    async fn insert(&self, token: &RefreshToken) -> Result<(), StoreError>;
    /// Atomically spends `old_hash` and stores `new` (same member and family as the old
    /// one, whatever `new` says). Exactly one of two concurrent rotations of one token wins;
    /// the other sees `Reused`.
    async fn rotate(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: OffsetDateTime,
    ) -> Result<RotateOutcome, StoreError>;
    /// Revokes every token of the family (logout, reuse).
    async fn revoke_family(&self, family_id: TokenFamilyId) -> Result<(), StoreError>;
    /// Revokes every token of the member (withdrawal).
    async fn revoke_member(&self, member_id: MemberId) -> Result<(), StoreError>;
}

/// What an access token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The bearer.
    pub member_id: MemberId,
    /// The bearer's role when the token was issued.
    pub role: Role,
    /// The refresh-token family of the login, so logout can revoke it.
    pub family_id: TokenFamilyId,
    /// After this the token is refused.
    pub expires_at: OffsetDateTime,
}

/// Why an access token could not be issued or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    /// A bad signature, a malformed or an expired token.
    #[error("invalid or expired access token")]
    Invalid,
    /// The key cannot sign.
    #[error("cannot sign access token: {0}")]
    Signing(String),
}

/// Signs and verifies short-lived access tokens (JWT).
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait AccessTokens: Send + Sync {
    /// # Errors
    /// [`AccessTokenError::Signing`] if the key cannot sign.
    fn issue(&self, claims: &AccessClaims) -> Result<String, AccessTokenError>;
    /// # Errors
    /// [`AccessTokenError::Invalid`] for a bad signature, a malformed or an expired token.
    fn verify(&self, token: &str) -> Result<AccessClaims, AccessTokenError>;
    /// How long issued tokens live.
    fn ttl(&self) -> Duration;
}

/// Each member's last commit token, kept for a short window so the member's reads see
/// their own writes on whichever instance serves them.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait ConsistencyTokens: Send + Sync {
    /// # Errors
    /// [`CacheError::Unavailable`] when the backend cannot be reached.
    async fn remember(&self, member_id: MemberId, token: &CommitToken) -> Result<(), CacheError>;
    /// The member's last token if still within the window.
    ///
    /// # Errors
    /// [`CacheError::Unavailable`]: the caller reads with `Strong` consistency instead.
    async fn recall(&self, member_id: MemberId) -> Result<Option<CommitToken>, CacheError>;
}
