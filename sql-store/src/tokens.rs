//! Refresh tokens with rotation and reuse detection. A rotation is one transaction on the
//! primary that locks the old token's row (SQLite: the single writer), so of two concurrent
//! rotations of one token the second waits for the first, then finds the token spent (a
//! reuse: the whole family is revoked).

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::{MemberId, TokenFamilyId};
use ports::{RefreshToken, RefreshTokenStore, RotateOutcome, StoreError};

use crate::backend::{Backend, Transaction};
use crate::sql::{Lock, SqlConn, sql};
use crate::{Columns, SqlStore};

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

/// Stores a token, created at `created_at`.
async fn insert(
    conn: &mut impl SqlConn,
    token_hash: &str,
    member_id: MemberId,
    family_id: TokenFamilyId,
    expires_at: OffsetDateTime,
    created_at: OffsetDateTime,
) -> Result<(), StoreError> {
    sql(
        "insert into refresh_tokens (token_hash, member_id, family_id, expires_at, created_at, updated_at) \
         values (?, ?, ?, ?, ?, ?)",
    )
    .text(token_hash)
    .id(member_id)
    .id(family_id)
    .time(expires_at)
    .time(created_at)
    .time(created_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn revoke_family(
    conn: &mut impl SqlConn,
    family_id: TokenFamilyId,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    sql("update refresh_tokens set revoked_at = ?, updated_at = ? where family_id = ? and revoked_at is null")
        .time(at)
        .time(at)
        .id(family_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The rotation's statements, inside `conn`'s transaction; the caller commits.
async fn rotate(
    conn: &mut impl SqlConn,
    old_hash: &str,
    new: &RefreshToken,
    now: OffsetDateTime,
) -> Result<RotateOutcome, StoreError> {
    let old = sql("select * from refresh_tokens where token_hash = ? {lock}")
        .text(old_hash)
        .lock(Lock::ForUpdate)
        .fetch_optional(&mut *conn, refresh_token)
        .await?;
    let Some(old) = old.filter(|old| old.is_valid_at(now)) else {
        return Ok(RotateOutcome::Invalid);
    };
    let (member_id, family_id) = (old.member_id, old.family_id);
    if old.spent {
        revoke_family(conn, family_id, now).await?;
        return Ok(RotateOutcome::Reused { member_id, family_id });
    }
    sql("update refresh_tokens set spent_at = ?, updated_at = ? where token_hash = ?")
        .time(now)
        .time(now)
        .text(old_hash)
        .execute(&mut *conn)
        .await?;
    // The new token joins the old one's member and family, whatever `new` says.
    insert(conn, &new.token_hash, member_id, family_id, new.expires_at, now).await?;
    Ok(RotateOutcome::Rotated { member_id, family_id })
}

#[async_trait]
impl<B: Backend> RefreshTokenStore for SqlStore<B> {
    async fn insert(&self, token: &RefreshToken) -> Result<(), StoreError> {
        insert(
            &mut self.primary().await?,
            &token.token_hash,
            token.member_id,
            token.family_id,
            token.expires_at,
            OffsetDateTime::now_utc(),
        )
        .await
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: OffsetDateTime,
    ) -> Result<RotateOutcome, StoreError> {
        let mut tx = Transaction::new(self.backend().begin().await?);
        let outcome = rotate(tx.conn()?, old_hash, new, now).await?;
        // An invalid token changed nothing: there is nothing to commit.
        if outcome == RotateOutcome::Invalid {
            tx.rollback().await?;
        } else {
            // No commit token: no read of this member's waits on a rotation.
            tx.commit().await?;
        }
        Ok(outcome)
    }

    async fn revoke_family(&self, family_id: TokenFamilyId) -> Result<(), StoreError> {
        revoke_family(&mut self.primary().await?, family_id, OffsetDateTime::now_utc()).await
    }

    async fn revoke_member(&self, member_id: MemberId) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        sql("update refresh_tokens set revoked_at = ?, updated_at = ? where member_id = ? and revoked_at is null")
            .time(now)
            .time(now)
            .id(member_id)
            .execute(&mut self.primary().await?)
            .await?;
        Ok(())
    }
}
