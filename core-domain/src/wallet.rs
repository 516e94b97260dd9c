//! The point wallet: integer KRW, `0 <= balance <= MAX_BALANCE`, every change a ledger row.
//!
//! The bounds are enforced atomically by the store (a conditional update); these functions
//! are the same rule for callers that hold a balance in hand, and the limits the store binds.

use std::str::FromStr;

use time::OffsetDateTime;

use crate::validation::{UnknownValue, ValidationErrors, in_range};
use crate::{Krw, LedgerId, MemberId};

pub const MAX_BALANCE: Krw = 10_000_000;
pub const MIN_CHARGE: Krw = 1;
pub const MAX_CHARGE: Krw = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("the balance would exceed {MAX_BALANCE}")]
    LimitExceeded,
    #[error("insufficient points")]
    Insufficient,
}

/// A validated charge amount (1–1,000,000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeAmount(Krw);

impl ChargeAmount {
    pub fn parse(amount: i64) -> Result<Self, ValidationErrors> {
        in_range(amount, MIN_CHARGE, MAX_CHARGE)
            .map(Self)
            .map_err(|e| ValidationErrors::field("amount", e.to_string()))
    }

    pub fn value(&self) -> Krw {
        self.0
    }
}

/// The balance after adding `amount`, if it stays within the maximum.
pub fn credit(balance: Krw, amount: Krw) -> Result<Krw, WalletError> {
    match balance.checked_add(amount) {
        Some(after) if after <= MAX_BALANCE && amount >= 0 => Ok(after),
        _ => Err(WalletError::LimitExceeded),
    }
}

/// The balance after taking `amount`, if it stays at or above zero.
pub fn debit(balance: Krw, amount: Krw) -> Result<Krw, WalletError> {
    match balance.checked_sub(amount) {
        Some(after) if after >= 0 && amount >= 0 => Ok(after),
        _ => Err(WalletError::Insufficient),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    Charge,
    Payment,
    Refund,
}

impl LedgerKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            LedgerKind::Charge => "charge",
            LedgerKind::Payment => "payment",
            LedgerKind::Refund => "refund",
        }
    }
}

impl FromStr for LedgerKind {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "charge" => Ok(LedgerKind::Charge),
            "payment" => Ok(LedgerKind::Payment),
            "refund" => Ok(LedgerKind::Refund),
            other => Err(UnknownValue::new("ledger kind", other)),
        }
    }
}

/// One wallet change: `amount` is signed (+ charge, − payment), `balance_after` the result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LedgerEntry {
    pub id: LedgerId,
    pub member_id: MemberId,
    pub kind: LedgerKind,
    pub amount: Krw,
    pub balance_after: Krw,
    /// The order or payment behind the change, if any.
    pub reference: Option<uuid::Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn charge_amount_bounds() {
        assert!(ChargeAmount::parse(0).is_err());
        assert!(ChargeAmount::parse(1).is_ok());
        assert!(ChargeAmount::parse(MAX_CHARGE).is_ok());
        assert!(ChargeAmount::parse(MAX_CHARGE + 1).is_err());
    }

    #[test]
    fn credit_stops_at_the_maximum_and_debit_at_zero() {
        assert_eq!(credit(MAX_BALANCE - 1, 1), Ok(MAX_BALANCE));
        assert_eq!(credit(MAX_BALANCE, 1), Err(WalletError::LimitExceeded));
        assert_eq!(debit(5, 5), Ok(0));
        assert_eq!(debit(5, 6), Err(WalletError::Insufficient));
    }

    proptest! {
        #[test]
        fn wallet_operations_keep_the_balance_in_bounds(start in 0..=MAX_BALANCE, ops in proptest::collection::vec((any::<bool>(), 0i64..=2 * MAX_CHARGE), 0..200)) {
            let mut balance = start;
            for (is_credit, amount) in ops {
                let result = if is_credit { credit(balance, amount) } else { debit(balance, amount) };
                match result {
                    Ok(after) => {
                        prop_assert_eq!(after, if is_credit { balance + amount } else { balance - amount });
                        balance = after;
                    }
                    Err(WalletError::LimitExceeded) => prop_assert!(balance + amount > MAX_BALANCE),
                    Err(WalletError::Insufficient) => prop_assert!(amount > balance),
                }
                prop_assert!((0..=MAX_BALANCE).contains(&balance));
            }
        }
    }
}
