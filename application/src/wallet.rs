//! The point wallet: charges and the ledger. The bounds are enforced by one atomic
//! conditional update in the store, so concurrent charges never overshoot.

use core_domain::wallet::{ChargeAmount, LedgerEntry, LedgerKind, MAX_BALANCE};
use core_domain::{Krw, LedgerId, MemberId, ValidationErrors};
use ports::{LedgerKey, Page, StoreError};

use crate::Ports;
use crate::error::problem;
use crate::freshness::Freshness;
use crate::idempotency::{IdempotencyError, IdempotencyKey, Keyed, Start};

/// Why a wallet use case failed.
#[derive(Debug, thiserror::Error)]
pub enum PointsError {
    /// The request's values are invalid.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// The store failed or was unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The balance would exceed … points.
    #[error("the balance would exceed {MAX_BALANCE} points")]
    LimitExceeded,
    /// The member is not active.
    #[error("the member is not active")]
    MemberInactive,
    /// The Idempotency-Key was used with another request, or its request still runs.
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
}

problem!(PointsError [Idempotency] {
    LimitExceeded => Conflict, "points.limit_exceeded";
    MemberInactive => Conflict, "member.inactive";
});

/// Point wallets: balance, charges and the ledger.
#[derive(Clone)]
pub struct WalletService {
    ports: Ports,
    freshness: Freshness,
}

impl WalletService {
    /// The service over `ports`.
    pub fn new(ports: Ports) -> Self {
        let freshness = Freshness::new(ports.consistency.clone());
        Self { ports, freshness }
    }

    /// The member's balance (read-your-writes).
    pub async fn balance(&self, member_id: MemberId) -> Result<Krw, PointsError> {
        let consistency = self.freshness.for_member(member_id).await;
        Ok(self.ports.wallet.balance(member_id, consistency).await?)
    }

    /// Charges 1–1,000,000 points; the balance stays at or below 10,000,000. With a key, a
    /// retry of a completed charge returns its balance and charges nothing.
    pub async fn charge(
        &self,
        member_id: MemberId,
        amount: i64,
        key: Option<&IdempotencyKey>,
    ) -> Result<Krw, PointsError> {
        let amount = ChargeAmount::parse(amount)?;
        let keyed = Keyed::new("charge", member_id, key);
        let mut uow = self.ports.db.begin().await?;
        match keyed.begin(uow.as_mut()).await? {
            Start::Active => {}
            Start::Inactive => return Err(PointsError::MemberInactive),
            Start::Replay(balance) => return Ok(balance),
        }
        let balance = uow
            .wallet()
            .credit_points(member_id, amount.value(), MAX_BALANCE)
            .await?
            .ok_or(PointsError::LimitExceeded)?;
        uow.wallet()
            .insert_ledger(&LedgerEntry {
                id: LedgerId(self.ports.ids.new_id()),
                member_id,
                kind: LedgerKind::Charge,
                amount: amount.value(),
                balance_after: balance,
                reference: None,
                created_at: self.ports.clock.now(),
            })
            .await?;
        keyed.complete(uow.as_mut(), &balance).await?;
        self.freshness.commit(uow.as_mut(), member_id).await?;
        Ok(balance)
    }

    /// One page of the member's ledger, newest first.
    pub async fn history(
        &self,
        member_id: MemberId,
        after: Option<LedgerKey>,
        limit: Option<i64>,
    ) -> Result<Page<LedgerEntry, LedgerKey>, PointsError> {
        let page = crate::paging::page(after, limit)?;
        let consistency = self.freshness.for_member(member_id).await;
        Ok(self.ports.wallet.ledger(member_id, &page, consistency).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Problem;
    use crate::testing::TestPorts;

    #[tokio::test]
    async fn a_charge_over_the_maximum_is_refused_and_not_committed() {
        let mut t = TestPorts::new();
        t.expect_uow(|uow| {
            crate::testing::active_member(uow);
            uow.wallet
                .expect_credit_points()
                .withf(|_, amount, max| *amount == 500 && *max == MAX_BALANCE)
                .return_once(|_, _, _| Ok(None));
            uow.wallet.expect_insert_ledger().never();
            uow.end.expect_commit().never();
        });
        let err = WalletService::new(t.build())
            .charge(MemberId(uuid::Uuid::now_v7()), 500, None)
            .await
            .expect_err("limit");
        assert_eq!(err.code(), "points.limit_exceeded");
    }

    #[tokio::test]
    async fn a_charge_writes_a_ledger_row_with_the_balance_after() {
        let mut t = TestPorts::new();
        t.expect_uow(|uow| {
            crate::testing::active_member(uow);
            uow.wallet.expect_credit_points().return_once(|_, _, _| Ok(Some(1_500)));
            uow.wallet
                .expect_insert_ledger()
                .withf(|e| e.amount == 500 && e.balance_after == 1_500 && e.kind == LedgerKind::Charge)
                .times(1)
                .returning(|_| Ok(()));
            uow.commits();
        });
        t.consistency.expect_remember().returning(|_, _| Ok(()));
        let balance = WalletService::new(t.build())
            .charge(MemberId(uuid::Uuid::now_v7()), 500, None)
            .await
            .expect("ok");
        assert_eq!(balance, 1_500);
    }

    #[tokio::test]
    async fn a_withdrawn_member_cannot_charge() {
        let mut t = TestPorts::new();
        t.expect_uow(|uow| {
            uow.members.expect_by_id().returning(|_| {
                let mut m = crate::testing::member_fixture(core_domain::member::Role::Rider);
                m.withdraw(time::OffsetDateTime::now_utc()).expect("active");
                Ok(Some(m))
            });
            uow.wallet.expect_credit_points().never();
            uow.end.expect_commit().never();
        });
        let err = WalletService::new(t.build())
            .charge(MemberId(uuid::Uuid::now_v7()), 500, None)
            .await
            .expect_err("inactive");
        assert_eq!(err.code(), "member.inactive");
    }

    #[tokio::test]
    async fn charge_amounts_are_validated() {
        let t = TestPorts::new();
        let err = WalletService::new(t.build())
            .charge(MemberId(uuid::Uuid::now_v7()), 0, None)
            .await
            .expect_err("bad");
        assert_eq!(err.code(), "validation.failed");
    }
}
