//! Refresh tokens with rotation and reuse detection. A rotation is one write transaction on
//! the single writer, so of two concurrent rotations of one token exactly one wins and the
//! other finds it spent (a reuse: the whole family is revoked).

use async_trait::async_trait;
use sqlx::SqliteExecutor;
use time::OffsetDateTime;

use core_domain::{MemberId, TokenFamilyId};
use ports::{RefreshToken, RefreshTokenStore, RotateOutcome, StoreError};
use sql_rows::tokens::refresh_token;

use crate::codec::{Row, micros, now_micros};
use crate::{SqliteStore, translate};

#[async_trait]
impl RefreshTokenStore for SqliteStore {
    async fn insert(&self, token: &RefreshToken) -> Result<(), StoreError> {
        insert_token(
            &self.inner.writer,
            &token.token_hash,
            token.member_id,
            token.family_id,
            token.expires_at,
            now_micros(),
        )
        .await
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: OffsetDateTime,
    ) -> Result<RotateOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(old) = sqlx::query("select * from refresh_tokens where token_hash = ?1")
            .bind(old_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(translate)?
        else {
            return Ok(RotateOutcome::Invalid);
        };
        let old = refresh_token(&Row(&old))?;
        if !old.is_valid_at(now) {
            return Ok(RotateOutcome::Invalid);
        }
        let (member_id, family_id) = (old.member_id, old.family_id);
        if old.spent {
            revoke_family_in(&mut tx, family_id, micros(now)).await?;
            tx.commit().await.map_err(translate)?;
            return Ok(RotateOutcome::Reused { member_id, family_id });
        }
        sqlx::query("update refresh_tokens set spent_at = ?2 where token_hash = ?1")
            .bind(old_hash)
            .bind(micros(now))
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
        // The new token joins the old one's member and family, whatever `new` says.
        insert_token(
            &mut *tx,
            &new.token_hash,
            member_id,
            family_id,
            new.expires_at,
            micros(now),
        )
        .await?;
        tx.commit().await.map_err(translate)?;
        Ok(RotateOutcome::Rotated { member_id, family_id })
    }

    async fn revoke_family(&self, family_id: TokenFamilyId) -> Result<(), StoreError> {
        let mut conn = self.inner.writer.acquire().await.map_err(translate)?;
        revoke_family_in(&mut conn, family_id, now_micros()).await
    }

    async fn revoke_member(&self, member_id: MemberId) -> Result<(), StoreError> {
        sqlx::query("update refresh_tokens set revoked_at = ?2 where member_id = ?1 and revoked_at is null")
            .bind(member_id.to_string())
            .bind(now_micros())
            .execute(&self.inner.writer)
            .await
            .map_err(translate)?;
        Ok(())
    }
}

/// Stores a token, created at `created_at` (unix microseconds).
async fn insert_token(
    executor: impl SqliteExecutor<'_>,
    token_hash: &str,
    member_id: MemberId,
    family_id: TokenFamilyId,
    expires_at: OffsetDateTime,
    created_at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "insert into refresh_tokens (token_hash, member_id, family_id, expires_at, \
         created_at) values (?1, ?2, ?3, ?4, ?5)",
    )
    .bind(token_hash)
    .bind(member_id.to_string())
    .bind(family_id.to_string())
    .bind(micros(expires_at))
    .bind(created_at)
    .execute(executor)
    .await
    .map_err(translate)?;
    Ok(())
}

async fn revoke_family_in(
    conn: &mut sqlx::SqliteConnection,
    family_id: TokenFamilyId,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query("update refresh_tokens set revoked_at = ?2 where family_id = ?1 and revoked_at is null")
        .bind(family_id.to_string())
        .bind(at)
        .execute(conn)
        .await
        .map_err(translate)?;
    Ok(())
}
