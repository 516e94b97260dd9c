//! Staff web sessions: the admin web's login, held in the database so that every instance
//! behind the load balancer sees it and a logout ends it everywhere.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::MemberId;

use crate::store::StoreError;

/// A staff member's browser session, as stored: only the SHA-256 of the cookie's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    /// Hex SHA-256 of the token in the browser's cookie.
    pub token_hash: String,
    /// Whose session it is.
    pub member_id: MemberId,
    /// The token every state-changing form of this session must carry.
    pub csrf_token: String,
    /// When the staff member logged in.
    pub created_at: OffsetDateTime,
    /// The last request seen (to the minute: [`StaffSessions::touch_session`] writes at most once a
    /// minute).
    pub last_seen_at: OffsetDateTime,
}

/// Staff sessions with an idle timeout.
///
/// # Errors (every method)
/// MUST return [`StoreError::Unavailable`] when the store cannot be reached.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait StaffSessions: Send + Sync {
    /// Stores a new session.
    async fn create_session(&self, session: &StaffSession) -> Result<(), StoreError>;
    /// The session of `token_hash` if it was seen after `idle_since` (read on the primary: a
    /// logout is seen at once), with `last_seen_at` moved to `now` when it is older than a
    /// minute. An idle session is deleted and `None`.
    async fn touch_session(
        &self,
        token_hash: &str,
        idle_since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<StaffSession>, StoreError>;
    /// Ends the session (logout); nothing if there is none.
    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Ends every session of the member (withdrawal, demotion).
    async fn delete_sessions_of(&self, member_id: MemberId) -> Result<(), StoreError>;
}
