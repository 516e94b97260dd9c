//! The first-come-first-served coupon gate shared by every instance: one Lua script over
//! one set per campaign (its admitted members), so admission is atomic across instances
//! and the crowd behind a sold-out campaign never reaches the database.

use std::time::Duration;

use async_trait::async_trait;
use core_domain::{CampaignId, MemberId};
use ports::{CouponGate, GateDecision, GateError};
use redis::Script;

use crate::conn::{RedisConn, millis};

/// KEYS: the campaign's admitted set. ARGV: member, total quantity, TTL in ms.
/// Returns 0 admitted, 1 sold out, 2 already admitted. A member admitted before is told so
/// even once the campaign is sold out (as the in-process gate does).
const ACQUIRE: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 2 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 1 end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
";

/// [`ports::CouponGate`] over Redis. The database stays the source of truth: after a Redis
/// restart (no persistence) the gate admits a campaign's quantity again, and the database
/// refuses what it already issued.
#[derive(Debug, Clone)]
pub struct RedisCouponGate {
    conn: RedisConn,
    ttl: Duration,
    acquire: Script,
}

impl RedisCouponGate {
    /// A gate on `conn`. A campaign's admitted set lives for `ttl` after its last admission
    /// (a campaign sold out longer ago is refused by the database's sold-out check first).
    pub fn new(conn: RedisConn, ttl: Duration) -> Self {
        Self {
            conn,
            ttl,
            acquire: Script::new(ACQUIRE),
        }
    }

    fn key(&self, campaign_id: CampaignId) -> String {
        self.conn.key("coupon", campaign_id, ":admitted")
    }
}

#[async_trait]
impl CouponGate for RedisCouponGate {
    async fn try_acquire(
        &self,
        campaign_id: CampaignId,
        member_id: MemberId,
        total_quantity: i64,
    ) -> Result<GateDecision, GateError> {
        let decision: i64 = self
            .conn
            .script(
                self.acquire
                    .key(self.key(campaign_id))
                    .arg(member_id.to_string())
                    .arg(total_quantity)
                    .arg(millis(self.ttl)),
            )
            .await
            .map_err(|failure| GateError::Unavailable(failure.0))?;
        match decision {
            0 => Ok(GateDecision::Admitted),
            1 => Ok(GateDecision::SoldOut),
            2 => Ok(GateDecision::AlreadyIssued),
            other => Err(GateError::Unavailable(format!("unexpected gate reply {other}"))),
        }
    }

    async fn release(&self, campaign_id: CampaignId, member_id: MemberId) -> Result<(), GateError> {
        self.conn
            .query::<i64>(redis::cmd("SREM").arg(self.key(campaign_id)).arg(member_id.to_string()))
            .await
            .map(|_| ())
            .map_err(|failure| GateError::Unavailable(failure.0))
    }
}
