//! Refresh-token rows, as rotation judges them.

use time::OffsetDateTime;

use core_domain::{MemberId, TokenFamilyId};
use ports::StoreError;

use crate::Columns;

/// A stored refresh token (found by its hash): whose it is and what has become of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefreshToken {
    pub member_id: MemberId,
    pub family_id: TokenFamilyId,
    pub expires_at: OffsetDateTime,
    /// Revoked (logout, withdrawal, reuse in its family): never valid again.
    pub revoked: bool,
    /// Rotated once already: presenting it again is a reuse.
    pub spent: bool,
}

impl StoredRefreshToken {
    /// Neither expired at `now` nor revoked. A spent token may still be valid: presenting
    /// it is then a reuse, not a mistake.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at > now && !self.revoked
    }
}

/// A `refresh_tokens` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn refresh_token(row: &impl Columns) -> Result<StoredRefreshToken, StoreError> {
    Ok(StoredRefreshToken {
        member_id: row.id("member_id")?,
        family_id: row.id("family_id")?,
        expires_at: row.time("expires_at")?,
        revoked: row.opt_time("revoked_at")?.is_some(),
        spent: row.opt_time("spent_at")?.is_some(),
    })
}
