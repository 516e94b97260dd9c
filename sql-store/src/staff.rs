//! Admin-web sessions, on the primary: a logout or an idle timeout is seen at once by every
//! instance.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::MemberId;
use ports::{StaffSession, StaffSessions, StoreError};

use crate::backend::Backend;
use crate::sql::sql;
use crate::{Columns, SqlStore};

/// `last_seen_at` is written at most this often: a page view is not a write each time.
const TOUCH_EVERY: time::Duration = time::Duration::minutes(1);

/// A `staff_sessions` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn staff_session(row: &impl Columns) -> Result<StaffSession, StoreError> {
    Ok(StaffSession {
        token_hash: row.text("token_hash")?,
        member_id: row.id("member_id")?,
        csrf_token: row.text("csrf_token")?,
        created_at: row.time("created_at")?,
        last_seen_at: row.time("last_seen_at")?,
    })
}

#[async_trait]
impl<B: Backend> StaffSessions for SqlStore<B> {
    async fn create_session(&self, s: &StaffSession) -> Result<(), StoreError> {
        sql(
            "insert into staff_sessions (token_hash, member_id, csrf_token, created_at, last_seen_at, updated_at) \
             values (?, ?, ?, ?, ?, ?)",
        )
        .text(&s.token_hash)
        .id(s.member_id)
        .text(&s.csrf_token)
        .time(s.created_at)
        .time(s.last_seen_at)
        .time(s.created_at)
        .execute(&mut self.primary().await?)
        .await?;
        Ok(())
    }

    async fn touch_session(
        &self,
        token_hash: &str,
        idle_since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Option<StaffSession>, StoreError> {
        let mut conn = self.primary().await?;
        let Some(mut session) = sql("select * from staff_sessions where token_hash = ?")
            .text(token_hash)
            .fetch_optional(&mut conn, staff_session)
            .await?
        else {
            return Ok(None);
        };
        if session.last_seen_at <= idle_since {
            sql("delete from staff_sessions where token_hash = ?")
                .text(token_hash)
                .execute(&mut conn)
                .await?;
            return Ok(None);
        }
        if now - session.last_seen_at >= TOUCH_EVERY {
            sql("update staff_sessions set last_seen_at = ?, updated_at = ? where token_hash = ?")
                .time(now)
                .time(now)
                .text(token_hash)
                .execute(&mut conn)
                .await?;
            session.last_seen_at = now;
        }
        Ok(Some(session))
    }

    async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sql("delete from staff_sessions where token_hash = ?")
            .text(token_hash)
            .execute(&mut self.primary().await?)
            .await?;
        Ok(())
    }

    async fn delete_sessions_of(&self, member_id: MemberId) -> Result<(), StoreError> {
        sql("delete from staff_sessions where member_id = ?")
            .id(member_id)
            .execute(&mut self.primary().await?)
            .await?;
        Ok(())
    }
}
