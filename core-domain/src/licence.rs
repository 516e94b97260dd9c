//! Driving licences: a rider drives (starts a driving session) only with a valid licence,
//! and licences are re-verified against the licence-verification provider when they near
//! their expiry or have not been verified for a while.

use std::fmt;
use std::str::FromStr;

use time::{Date, Duration, OffsetDateTime};

use crate::event::EventPayload;
use crate::insurance::Actor;
use crate::validation::{FieldError, UnknownValue};
use crate::{AuditId, MemberId};

/// Characters of a licence number, hyphens included (a Korean licence is 12 digits,
/// `11-22-333333-44`; other issuers use letters too).
pub const NUMBER_MIN: usize = 8;
pub const NUMBER_MAX: usize = 24;

/// A licence number: upper-cased, spaces removed, letters, digits and single hyphens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceNumber(String);

impl LicenceNumber {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let number: String = raw
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_uppercase();
        let well_formed = number.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !number.starts_with('-')
            && !number.ends_with('-')
            && !number.contains("--");
        if well_formed && (NUMBER_MIN..=NUMBER_MAX).contains(&number.len()) {
            Ok(Self(number))
        } else {
            Err(FieldError::Format(
                "8 to 24 characters: letters or digits, optionally separated by single hyphens",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenceStatus {
    /// Verified, and not past its expiry date.
    Valid,
    /// The provider rejected it (revoked, suspended, unknown): no driving until the rider
    /// registers a licence the provider accepts.
    Suspended,
    /// Past its expiry date.
    Expired,
}

impl LicenceStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            LicenceStatus::Valid => "valid",
            LicenceStatus::Suspended => "suspended",
            LicenceStatus::Expired => "expired",
        }
    }
}

impl FromStr for LicenceStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "valid" => Ok(LicenceStatus::Valid),
            "suspended" => Ok(LicenceStatus::Suspended),
            "expired" => Ok(LicenceStatus::Expired),
            other => Err(UnknownValue::new("licence status", other)),
        }
    }
}

impl fmt::Display for LicenceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the licence-verification provider answered about a licence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The licence is in force until the end of `expires_on` (the provider's date wins over
    /// the one the rider typed).
    Valid { expires_on: Date },
    /// Not in force: revoked, suspended or unknown to the issuer.
    Rejected { reason: String },
}

/// When a valid licence is due for re-verification: it expires within `expiring_within`,
/// or it was last verified `unverified_for` ago or longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuePolicy {
    pub expiring_within: Duration,
    pub unverified_for: Duration,
}

impl Default for DuePolicy {
    fn default() -> Self {
        Self {
            expiring_within: Duration::days(30),
            unverified_for: Duration::days(90),
        }
    }
}

/// The two bounds a store's "due" query compares with, for one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueCutoffs {
    /// Due when `expires_on` is on or before this date.
    pub expires_by: Date,
    /// Due when `last_verified_at` is at or before this time.
    pub verified_before: OffsetDateTime,
}

impl DuePolicy {
    pub fn cutoffs(&self, now: OffsetDateTime) -> DueCutoffs {
        DueCutoffs {
            expires_by: (now + self.expiring_within).date(),
            verified_before: now - self.unverified_for,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenceError {
    #[error("no driving licence is registered")]
    Missing,
    #[error("the driving licence is {0}")]
    NotValid(LicenceStatus),
    #[error("the licence-verification provider rejected the licence: {0}")]
    Rejected(String),
}

/// A rider's driving licence (one per member; registering another replaces it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licence {
    pub member_id: MemberId,
    pub number: String,
    /// The last day the licence is in force.
    pub expires_on: Date,
    pub status: LicenceStatus,
    /// Why it is suspended (the provider's reason); `None` otherwise.
    pub status_reason: Option<String>,
    pub last_verified_at: OffsetDateTime,
    pub registered_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// One verification of a licence, kept as its audit trail: who asked, when, and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceCheck {
    pub id: AuditId,
    pub member_id: MemberId,
    pub number: String,
    pub status: LicenceStatus,
    pub reason: Option<String>,
    pub actor: Actor,
    pub checked_at: OffsetDateTime,
}

impl Licence {
    /// A licence the provider has just verified. A rejected licence is not registered
    /// (the rider is told why), and neither is one the provider says has already expired.
    pub fn register(
        member_id: MemberId,
        number: LicenceNumber,
        verdict: Verdict,
        now: OffsetDateTime,
    ) -> Result<Self, LicenceError> {
        match verdict {
            Verdict::Rejected { reason } => Err(LicenceError::Rejected(reason)),
            Verdict::Valid { expires_on } if expires_on < now.date() => {
                Err(LicenceError::NotValid(LicenceStatus::Expired))
            }
            Verdict::Valid { expires_on } => Ok(Self {
                member_id,
                number: number.into_string(),
                expires_on,
                status: LicenceStatus::Valid,
                status_reason: None,
                last_verified_at: now,
                registered_at: now,
                updated_at: now,
            }),
        }
    }

    /// Whether the re-verification batch should ask the provider about it now: only valid
    /// licences are re-verified (a suspended one waits for the rider to register another).
    pub fn is_due(&self, cutoffs: &DueCutoffs) -> bool {
        self.status == LicenceStatus::Valid
            && (self.expires_on <= cutoffs.expires_by || self.last_verified_at <= cutoffs.verified_before)
    }

    /// Ok when the rider may start driving at `now`.
    pub fn permits_driving(&self, now: OffsetDateTime) -> Result<(), LicenceError> {
        match self.status {
            LicenceStatus::Valid if self.expires_on < now.date() => Err(LicenceError::NotValid(LicenceStatus::Expired)),
            LicenceStatus::Valid => Ok(()),
            other => Err(LicenceError::NotValid(other)),
        }
    }

    /// Applies a re-verification's answer. Returns the audit entry, and the
    /// `member.licence_suspended` event when this suspends the licence.
    pub fn reverify(
        &mut self,
        verdict: Verdict,
        check_id: AuditId,
        actor: Actor,
        now: OffsetDateTime,
    ) -> (LicenceCheck, Option<EventPayload>) {
        let mut event = None;
        match verdict {
            Verdict::Valid { expires_on } => {
                self.expires_on = expires_on;
                self.status = if expires_on < now.date() {
                    LicenceStatus::Expired
                } else {
                    LicenceStatus::Valid
                };
                self.status_reason = None;
            }
            Verdict::Rejected { reason } => {
                if self.status != LicenceStatus::Suspended {
                    event = Some(EventPayload::LicenceSuspended {
                        member_id: self.member_id,
                        reason: reason.clone(),
                        suspended_at: now,
                    });
                }
                self.status = LicenceStatus::Suspended;
                self.status_reason = Some(reason);
            }
        }
        self.last_verified_at = now;
        self.updated_at = now;
        let check = LicenceCheck {
            id: check_id,
            member_id: self.member_id,
            number: self.number.clone(),
            status: self.status,
            reason: self.status_reason.clone(),
            actor,
            checked_at: now,
        };
        (check, event)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};
    use uuid::Uuid;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-07 03:00 UTC);

    fn licence() -> Licence {
        Licence::register(
            MemberId(Uuid::nil()),
            LicenceNumber::parse("11-22-333333-44").expect("valid"),
            Verdict::Valid {
                expires_on: date!(2030 - 05 - 31),
            },
            NOW,
        )
        .expect("registered")
    }

    #[test]
    fn numbers_are_normalised_and_checked() {
        assert_eq!(
            LicenceNumber::parse(" 11-22 333333-44 ").map(LicenceNumber::into_string),
            Ok("11-22333333-44".into())
        );
        assert_eq!(
            LicenceNumber::parse("ab12cd34").map(LicenceNumber::into_string),
            Ok("AB12CD34".into())
        );
        for bad in [
            "1234567",
            "-11223333",
            "11--22333333",
            "11-22-333333-44-",
            "1122333333!4",
            "1234567890123456789012345",
            "1-2-3-4",
        ] {
            assert!(LicenceNumber::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registration_takes_the_providers_answer() {
        let l = licence();
        assert_eq!(
            (l.status, l.last_verified_at, l.expires_on),
            (LicenceStatus::Valid, NOW, date!(2030 - 05 - 31))
        );
        let number = || LicenceNumber::parse("11-22-333333-44").expect("valid");
        let rejected = Verdict::Rejected {
            reason: "revoked".into(),
        };
        assert_eq!(
            Licence::register(MemberId(Uuid::nil()), number(), rejected, NOW),
            Err(LicenceError::Rejected("revoked".into()))
        );
        let lapsed = Verdict::Valid {
            expires_on: date!(2026 - 12 - 06),
        };
        assert_eq!(
            Licence::register(MemberId(Uuid::nil()), number(), lapsed, NOW),
            Err(LicenceError::NotValid(LicenceStatus::Expired))
        );
    }

    #[test]
    fn due_when_expiring_soon_or_unverified_for_long() {
        let policy = DuePolicy::default();
        let mut l = licence();
        assert!(!l.is_due(&policy.cutoffs(NOW)));
        assert!(
            l.is_due(&policy.cutoffs(NOW + Duration::days(90))),
            "not verified for 90 days"
        );
        l.expires_on = date!(2027 - 01 - 06);
        assert!(l.is_due(&policy.cutoffs(NOW)), "expires within 30 days");
        l.expires_on = date!(2027 - 01 - 07);
        assert!(!l.is_due(&policy.cutoffs(NOW)), "31 days away");
        l.status = LicenceStatus::Suspended;
        assert!(
            !l.is_due(&policy.cutoffs(NOW + Duration::days(900))),
            "suspended licences are not re-verified"
        );
    }

    #[test]
    fn driving_needs_a_valid_unexpired_licence() {
        let mut l = licence();
        assert_eq!(l.permits_driving(NOW), Ok(()));
        assert_eq!(l.permits_driving(datetime!(2030-05-31 23:59 UTC)), Ok(()));
        assert_eq!(
            l.permits_driving(datetime!(2030-06-01 00:00 UTC)),
            Err(LicenceError::NotValid(LicenceStatus::Expired))
        );
        l.status = LicenceStatus::Suspended;
        assert_eq!(
            l.permits_driving(NOW),
            Err(LicenceError::NotValid(LicenceStatus::Suspended))
        );
    }

    #[test]
    fn a_rejection_suspends_once_and_is_audited() {
        let mut l = licence();
        let later = NOW + Duration::days(1);
        let (check, event) = l.reverify(
            Verdict::Rejected {
                reason: "revoked".into(),
            },
            AuditId(Uuid::nil()),
            Actor::System("licence-reverification".into()),
            later,
        );
        assert_eq!(
            (l.status, l.status_reason.as_deref(), l.last_verified_at),
            (LicenceStatus::Suspended, Some("revoked"), later)
        );
        assert_eq!(
            (check.status, check.reason.as_deref(), check.checked_at),
            (LicenceStatus::Suspended, Some("revoked"), later)
        );
        assert_eq!(
            event,
            Some(EventPayload::LicenceSuspended {
                member_id: l.member_id,
                reason: "revoked".into(),
                suspended_at: later,
            })
        );
        let (_, again) = l.reverify(
            Verdict::Rejected {
                reason: "revoked".into(),
            },
            AuditId(Uuid::nil()),
            Actor::System("licence-reverification".into()),
            later,
        );
        assert_eq!(again, None, "an already suspended licence emits nothing more");
    }

    #[test]
    fn a_confirmation_renews_the_expiry_and_the_verification_time() {
        let mut l = licence();
        let later = NOW + Duration::days(100);
        let (check, event) = l.reverify(
            Verdict::Valid {
                expires_on: date!(2035 - 05 - 31),
            },
            AuditId(Uuid::nil()),
            Actor::System("licence-reverification".into()),
            later,
        );
        assert_eq!(
            (l.status, l.expires_on, l.last_verified_at),
            (LicenceStatus::Valid, date!(2035 - 05 - 31), later)
        );
        assert_eq!((check.status, event), (LicenceStatus::Valid, None));
        let (check, _) = l.reverify(
            Verdict::Valid {
                expires_on: date!(2027 - 01 - 01),
            },
            AuditId(Uuid::nil()),
            Actor::System("licence-reverification".into()),
            datetime!(2027-01-02 00:00 UTC),
        );
        assert_eq!(
            (l.status, check.status),
            (LicenceStatus::Expired, LicenceStatus::Expired)
        );
    }
}
