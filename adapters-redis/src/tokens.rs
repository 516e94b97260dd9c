//! Refresh tokens in Redis, so every instance sees a rotation at once. A family (one login)
//! is one hash holding each token's state, and a rotation is one Lua script over it: of two
//! concurrent rotations of a token exactly one finds it live, the other finds it spent and
//! revokes the family. A token's hash leads to its family through a small index key.

use std::time::Duration;

use async_trait::async_trait;
use core_domain::{MemberId, TokenFamilyId};
use ports::{RefreshToken, RefreshTokenStore, RotateOutcome, StoreError};
use redis::Script;
use time::OffsetDateTime;

use crate::conn::{Failure, RedisConn};

/// Keys outlive their last token by this much, so a server clock a little ahead of Redis's
/// never makes a live token's key vanish (expiry itself is judged by the caller's `now`).
const KEY_GRACE: Duration = Duration::from_secs(300);

/// Adds a token to its family and lets the family live at least until `expire_at`.
/// KEYS: family hash. ARGV: member, token field, token state, expire_at (unix ms).
const INSERT: &str = r"
redis.call('HSET', KEYS[1], 'member', ARGV[1], ARGV[2], ARGV[3])
local expire_at = tonumber(ARGV[4])
if redis.call('PEXPIRETIME', KEYS[1]) < expire_at then redis.call('PEXPIREAT', KEYS[1], ARGV[4]) end
return 1
";

/// Adds a family to a member's set and lets the set live at least until `expire_at`.
/// KEYS: member's family set. ARGV: family, expire_at (unix ms).
const ADD_FAMILY: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
local expire_at = tonumber(ARGV[2])
if redis.call('PEXPIRETIME', KEYS[1]) < expire_at then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return 1
";

/// Token states are `L:<expires µs>` (live) and `S:<expires µs>` (spent).
/// KEYS: family hash. ARGV: old field, new field, now (µs), new expiry (µs), expire_at (ms).
/// Returns {0, ''} invalid, {1, member} rotated, {2, member} reused (the family is now revoked).
/// (Never a Lua `false` in a reply: over RESP3 it would arrive as a boolean, not a nil.)
const ROTATE: &str = r"
local member = redis.call('HGET', KEYS[1], 'member')
if not member or redis.call('HEXISTS', KEYS[1], 'revoked') == 1 then return {0, ''} end
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return {0, ''} end
local expires = string.sub(old, 3)
if tonumber(expires) <= tonumber(ARGV[3]) then return {0, ''} end
if string.sub(old, 1, 1) == 'S' then
  redis.call('HSET', KEYS[1], 'revoked', '1')
  return {2, member}
end
redis.call('HSET', KEYS[1], ARGV[1], 'S:' .. expires, ARGV[2], 'L:' .. ARGV[4])
local expire_at = tonumber(ARGV[5])
if redis.call('PEXPIRETIME', KEYS[1]) < expire_at then redis.call('PEXPIREAT', KEYS[1], ARGV[5]) end
return {1, member}
";

/// Marks a family revoked if it still exists (never creates a key without a TTL).
/// KEYS: family hash.
const REVOKE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'revoked', '1') end
return 1
";

/// [`ports::RefreshTokenStore`] over Redis. Keys: `rt:{hash}` → family, `rt-family:{id}` →
/// hash of `member`, `revoked` and `t:<hash>` → state, `rt-member:{id}` → set of families.
#[derive(Debug, Clone)]
pub struct RedisRefreshTokens {
    conn: RedisConn,
    insert: Script,
    add_family: Script,
    rotate: Script,
    revoke: Script,
}

impl RedisRefreshTokens {
    /// A store on `conn`; its keys live until the last token of their family expires.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            insert: Script::new(INSERT),
            add_family: Script::new(ADD_FAMILY),
            rotate: Script::new(ROTATE),
            revoke: Script::new(REVOKE),
        }
    }

    fn index_key(&self, token_hash: &str) -> String {
        self.conn.key("rt", token_hash, "")
    }

    fn family_key(&self, family_id: TokenFamilyId) -> String {
        self.conn.key("rt-family", family_id, "")
    }

    fn member_key(&self, member_id: MemberId) -> String {
        self.conn.key("rt-member", member_id, "")
    }

    async fn add_family(
        &self,
        member_id: MemberId,
        family_id: TokenFamilyId,
        expire_at: i64,
    ) -> Result<(), StoreError> {
        self.conn
            .script::<i64>(
                self.add_family
                    .key(self.member_key(member_id))
                    .arg(family_id.to_string())
                    .arg(expire_at),
            )
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Points `token_hash` at `family_id` until the token's key expires.
    async fn index(&self, token_hash: &str, family_id: TokenFamilyId, expire_at: i64) -> Result<(), StoreError> {
        self.conn
            .query::<()>(
                redis::cmd("SET")
                    .arg(self.index_key(token_hash))
                    .arg(family_id.to_string())
                    .arg("PXAT")
                    .arg(expire_at),
            )
            .await
            .map_err(unavailable)
    }
}

fn unavailable(failure: Failure) -> StoreError {
    StoreError::unavailable(failure.0)
}

fn token_field(token_hash: &str) -> String {
    format!("t:{token_hash}")
}

/// Microseconds since the Unix epoch (how token expiries are compared, as the SQL stores do).
fn unix_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// The absolute expiry (Unix ms, at least 1) of the keys of a token expiring at `expires_at`.
fn key_expiry_ms(expires_at: OffsetDateTime) -> i64 {
    let at = expires_at.unix_timestamp_nanos() / 1_000_000 + KEY_GRACE.as_millis().cast_signed();
    i64::try_from(at).unwrap_or(i64::MAX).max(1)
}

#[async_trait]
impl RefreshTokenStore for RedisRefreshTokens {
    async fn insert(&self, token: &RefreshToken) -> Result<(), StoreError> {
        let expire_at = key_expiry_ms(token.expires_at);
        self.index(&token.token_hash, token.family_id, expire_at).await?;
        self.conn
            .script::<i64>(
                self.insert
                    .key(self.family_key(token.family_id))
                    .arg(token.member_id.to_string())
                    .arg(token_field(&token.token_hash))
                    .arg(format!("L:{}", unix_micros(token.expires_at)))
                    .arg(expire_at),
            )
            .await
            .map_err(unavailable)?;
        self.add_family(token.member_id, token.family_id, expire_at).await
    }

    async fn rotate(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: OffsetDateTime,
    ) -> Result<RotateOutcome, StoreError> {
        let family: Option<String> = self
            .conn
            .query(redis::cmd("GET").arg(self.index_key(old_hash)))
            .await
            .map_err(unavailable)?;
        let Some(family_id) = family.and_then(|f| f.parse::<TokenFamilyId>().ok()) else {
            return Ok(RotateOutcome::Invalid);
        };
        // Index the new token first: until the script makes it live in the family, the
        // index leads nowhere, and if Redis fails after the script the token still works.
        let expire_at = key_expiry_ms(new.expires_at);
        self.index(&new.token_hash, family_id, expire_at).await?;
        let (outcome, member): (i64, String) = self
            .conn
            .script(
                self.rotate
                    .key(self.family_key(family_id))
                    .arg(token_field(old_hash))
                    .arg(token_field(&new.token_hash))
                    .arg(unix_micros(now))
                    .arg(unix_micros(new.expires_at))
                    .arg(expire_at),
            )
            .await
            .map_err(unavailable)?;
        let member_id = member.parse::<MemberId>().ok();
        match (outcome, member_id) {
            (1, Some(member_id)) => {
                // The member's set must outlive the family it now extends, for `revoke_member`.
                self.add_family(member_id, family_id, expire_at).await?;
                Ok(RotateOutcome::Rotated { member_id, family_id })
            }
            (outcome, member_id) => {
                // Best effort: the index of a token that never became live is dead weight.
                let _: Result<i64, Failure> = self
                    .conn
                    .query(redis::cmd("DEL").arg(self.index_key(&new.token_hash)))
                    .await;
                match (outcome, member_id) {
                    (2, Some(member_id)) => Ok(RotateOutcome::Reused { member_id, family_id }),
                    _ => Ok(RotateOutcome::Invalid),
                }
            }
        }
    }

    async fn revoke_family(&self, family_id: TokenFamilyId) -> Result<(), StoreError> {
        self.conn
            .script::<i64>(&self.revoke.key(self.family_key(family_id)))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn revoke_member(&self, member_id: MemberId) -> Result<(), StoreError> {
        let families: Vec<String> = self
            .conn
            .query(redis::cmd("SMEMBERS").arg(self.member_key(member_id)))
            .await
            .map_err(unavailable)?;
        // Families live in different cluster slots: one script call each. A login racing
        // this adds a family it misses, but `refresh` refuses a withdrawn member anyway.
        for family in families {
            if let Ok(family_id) = family.parse::<TokenFamilyId>() {
                self.revoke_family(family_id).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn expiries_are_microseconds_and_keys_outlive_them() {
        let at = datetime!(2026-05-01 0:00:00.000_001 UTC);
        assert_eq!(unix_micros(at), 1_777_593_600_000_001);
        assert_eq!(key_expiry_ms(at), 1_777_593_600_000 + 300_000);
        assert_eq!(key_expiry_ms(datetime!(1960-01-01 0:00 UTC)), 1);
    }
}
