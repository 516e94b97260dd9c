//! Refresh tokens with rotation and reuse detection. A rotation is one transaction on the
//! primary that locks the old token's row (`for update`), so of two concurrent rotations of
//! one token the second waits for the first, then finds the token spent (a reuse: the whole
//! family is revoked).

use async_trait::async_trait;
use sqlx::PgConnection;
use time::OffsetDateTime;

use core_domain::{MemberId, TokenFamilyId};
use ports::{RefreshToken, RefreshTokenStore, RotateOutcome, StoreError};
use sql_rows::tokens::refresh_token;

use crate::codec::Row;
use crate::{PgStore, translate};

#[async_trait]
impl RefreshTokenStore for PgStore {
    async fn insert(&self, token: &RefreshToken) -> Result<(), StoreError> {
        sqlx::query(
            "insert into refresh_tokens (token_hash, member_id, family_id, expires_at, \
             created_at, updated_at) values ($1, $2, $3, $4, now(), now())",
        )
        .bind(&token.token_hash)
        .bind(token.member_id.0)
        .bind(token.family_id.0)
        .bind(token.expires_at)
        .execute(&self.inner.primary)
        .await
        .map_err(translate)?;
        Ok(())
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: OffsetDateTime,
    ) -> Result<RotateOutcome, StoreError> {
        let mut tx = self
            .inner
            .primary
            .begin_with("begin isolation level read committed")
            .await
            .map_err(translate)?;
        let Some(old) = sqlx::query("select * from refresh_tokens where token_hash = $1 for update")
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
            revoke_family_in(&mut tx, family_id, now).await?;
            tx.commit().await.map_err(translate)?;
            return Ok(RotateOutcome::Reused { member_id, family_id });
        }
        sqlx::query("update refresh_tokens set spent_at = $2, updated_at = now() where token_hash = $1")
            .bind(old_hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(translate)?;
        // The new token joins the old one's member and family, whatever `new` says.
        sqlx::query(
            "insert into refresh_tokens (token_hash, member_id, family_id, expires_at, \
             created_at, updated_at) values ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&new.token_hash)
        .bind(member_id.0)
        .bind(family_id.0)
        .bind(new.expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(translate)?;
        tx.commit().await.map_err(translate)?;
        Ok(RotateOutcome::Rotated { member_id, family_id })
    }

    async fn revoke_family(&self, family_id: TokenFamilyId) -> Result<(), StoreError> {
        let mut conn = self.inner.primary.acquire().await.map_err(translate)?;
        revoke_family_in(&mut conn, family_id, OffsetDateTime::now_utc()).await
    }

    async fn revoke_member(&self, member_id: MemberId) -> Result<(), StoreError> {
        sqlx::query(
            "update refresh_tokens set revoked_at = now(), updated_at = now() \
             where member_id = $1 and revoked_at is null",
        )
        .bind(member_id.0)
        .execute(&self.inner.primary)
        .await
        .map_err(translate)?;
        Ok(())
    }
}

async fn revoke_family_in(
    conn: &mut PgConnection,
    family_id: TokenFamilyId,
    at: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "update refresh_tokens set revoked_at = $2, updated_at = now() \
         where family_id = $1 and revoked_at is null",
    )
    .bind(family_id.0)
    .bind(at)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}
