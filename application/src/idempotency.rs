//! `Idempotency-Key` for every money-moving request (point charge, order placement, coupon
//! issue, payment). The key is reserved in the transaction that does the work and the
//! response is stored there, so a retry after a lost answer (a load balancer's 502, a
//! timeout) replays the first response instead of charging, ordering or issuing twice. A
//! key reused with another request is refused; a retry while the first attempt still runs
//! is told to wait. A failed attempt stores nothing, so it can be retried with its key.

use serde::Serialize;
use serde::de::DeserializeOwned;

use core_domain::member::Member;
use core_domain::{MemberId, ValidationErrors};
use ports::{Claim, Consistency, IdempotencyReads, IdempotencyRecord, KeyClaim, StoreError, UnitOfWork};

use crate::error::{ErrorKind, Problem};

/// A client's `Idempotency-Key` and the fingerprint of the request it came with (the
/// caller's choice: the HTTP layer hashes the path and the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    key: String,
    fingerprint: String,
}

impl IdempotencyKey {
    /// The key, checked: 1–255 visible ASCII characters.
    ///
    /// # Errors
    /// A field error on `Idempotency-Key` for any other key.
    pub fn parse(key: &str, fingerprint: impl Into<String>) -> Result<Self, ValidationErrors> {
        if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self {
                key: key.to_owned(),
                fingerprint: fingerprint.into(),
            })
        } else {
            Err(ValidationErrors::field(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ))
        }
    }

    /// The key as the client sent it.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// Why a keyed request did not run: its key was used before, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// This Idempotency-Key was used with a different request.
    #[error("this Idempotency-Key was used with a different request")]
    Mismatch,
    /// A request with this Idempotency-Key is still in progress.
    #[error("a request with this Idempotency-Key is still in progress")]
    InProgress,
    /// The store failed or was unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Problem for IdempotencyError {
    fn kind(&self) -> ErrorKind {
        match self {
            IdempotencyError::Mismatch => ErrorKind::Invalid,
            IdempotencyError::InProgress => ErrorKind::Conflict,
            IdempotencyError::Store(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            IdempotencyError::Mismatch => "idempotency.key_mismatch",
            IdempotencyError::InProgress => "idempotency.in_progress",
            IdempotencyError::Store(e) => e.code(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            IdempotencyError::Store(e) => e.public_detail(),
            other => other.to_string(),
        }
    }
}

/// How a member's request starts ([`Keyed::begin`]).
#[derive(Debug)]
pub(crate) enum Start<T> {
    /// The key is reserved (or there is none) and the member is active: go on.
    Active,
    /// The member does not exist or is not active.
    Inactive,
    /// A request with this key completed before: its response.
    Replay(T),
}

/// One member's request to one operation, with or without a key. Without one, every
/// method does nothing: the request simply runs.
pub(crate) struct Keyed<'a> {
    operation: &'static str,
    member_id: MemberId,
    key: Option<&'a IdempotencyKey>,
}

impl<'a> Keyed<'a> {
    /// `operation` names what the key protects (`charge`, `order`, …): keys are per member
    /// and operation, so two members, or one member's charge and order, never collide.
    pub(crate) fn new(operation: &'static str, member_id: MemberId, key: Option<&'a IdempotencyKey>) -> Self {
        Self {
            operation,
            member_id,
            key,
        }
    }

    /// Where the key lives: built only for a request that has a key, so the unkeyed crowd
    /// of a coupon campaign allocates nothing here.
    fn scope(&self) -> String {
        format!("{}:{}", self.operation, self.member_id)
    }

    /// Starts the request in `uow`: reserves the key and reads the member locked for change,
    /// in one round trip where the store can ([`UnitOfWork::claim_for_member`]).
    /// [`Start::Replay`] when a request with this key completed before: the caller returns
    /// its response and does nothing else (`uow` is rolled back).
    ///
    /// # Errors
    /// [`IdempotencyError`] for the key used with another request or still in progress.
    pub(crate) async fn begin<T>(&self, uow: &mut dyn UnitOfWork) -> Result<Start<T>, IdempotencyError>
    where
        T: DeserializeOwned,
    {
        let keyed = self.key.map(|key| (self.scope(), key));
        let claim = keyed.as_ref().map(|(scope, key)| KeyClaim {
            scope,
            key: &key.key,
            fingerprint: &key.fingerprint,
        });
        match uow.claim_for_member(claim, self.member_id).await? {
            Claim::Member(member) if member.as_ref().is_some_and(Member::is_active) => Ok(Start::Active),
            Claim::Member(_) => Ok(Start::Inactive),
            Claim::Seen(record) => {
                let replay = self.replay_of(record)?.ok_or_else(|| {
                    StoreError::other(format!("{}: a key was seen for an unkeyed request", self.operation))
                })?;
                uow.rollback().await?;
                Ok(Start::Replay(replay))
            }
        }
    }

    /// Stores `response` under the key reserved by [`Keyed::begin`], in the same `uow`.
    pub(crate) async fn complete<T: Serialize>(
        &self,
        uow: &mut dyn UnitOfWork,
        response: &T,
    ) -> Result<(), StoreError> {
        let Some(key) = self.key else { return Ok(()) };
        let response = serde_json::to_string(response).map_err(|e| StoreError::other(e.to_string()))?;
        uow.idempotency().complete(&self.scope(), &key.key, &response).await
    }

    /// The response a completed request with this key stored, read without a write: for
    /// a retry that a fast path (a cache, a gate) turns away before the database.
    ///
    /// # Errors
    /// As [`Keyed::begin`]; `Ok(None)` when the key was not used.
    pub(crate) async fn stored<T>(
        &self,
        reads: &dyn IdempotencyReads,
        consistency: Consistency,
    ) -> Result<Option<T>, IdempotencyError>
    where
        T: DeserializeOwned,
    {
        let Some(key) = self.key else { return Ok(None) };
        match reads.idempotency_record(&self.scope(), &key.key, consistency).await? {
            None => Ok(None),
            Some(record) => self.replay_of(record),
        }
    }

    fn replay_of<T>(&self, record: IdempotencyRecord) -> Result<Option<T>, IdempotencyError>
    where
        T: DeserializeOwned,
    {
        let Some(key) = self.key else { return Ok(None) };
        if record.fingerprint != key.fingerprint {
            return Err(IdempotencyError::Mismatch);
        }
        let response = record.response.ok_or(IdempotencyError::InProgress)?;
        serde_json::from_str(&response)
            .map(Some)
            .map_err(|e| StoreError::other(format!("stored response of {}: {e}", self.scope())).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::parse("a", "f").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255), "f").is_ok());
        for bad in ["", " ", "has space", "é", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad, "f").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_record_replays_only_for_the_same_request_once_complete() {
        let key = IdempotencyKey::parse("k", "fp").expect("valid");
        let keyed = Keyed::new("charge", MemberId(uuid::Uuid::now_v7()), Some(&key));
        let record = |fingerprint: &str, response: Option<&str>| IdempotencyRecord {
            fingerprint: fingerprint.to_owned(),
            response: response.map(str::to_owned),
        };
        let replay: Option<i64> = keyed.replay_of(record("fp", Some("1500"))).expect("replay");
        assert_eq!(replay, Some(1_500));
        let other = keyed.replay_of::<i64>(record("other", Some("1500")));
        assert!(matches!(other, Err(IdempotencyError::Mismatch)));
        let running = keyed.replay_of::<i64>(record("fp", None));
        assert!(matches!(running, Err(IdempotencyError::InProgress)));
    }
}
