//! Members: riders who sign up themselves, and staff (CX, admin) created by operators.

use std::fmt;
use std::str::FromStr;

use time::{Duration, OffsetDateTime};

use crate::MemberId;
use crate::event::EventPayload;
use crate::validation::{FieldError, UnknownValue, ValidationErrors, text};

/// Personal data of a withdrawn member is anonymised this long after withdrawal.
pub const ANONYMISE_AFTER: Duration = Duration::days(60);

pub const PASSWORD_MIN: usize = 10;
pub const PASSWORD_MAX: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Rider,
    Cx,
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Rider => "rider",
            Role::Cx => "cx",
            Role::Admin => "admin",
        }
    }

    /// CX and admin staff may look at any rider's policies and statements.
    pub fn is_staff(&self) -> bool {
        matches!(self, Role::Cx | Role::Admin)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rider" => Ok(Role::Rider),
            "cx" => Ok(Role::Cx),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownValue::new("role", other)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Active,
    Withdrawn,
}

impl MemberStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Withdrawn => "withdrawn",
        }
    }
}

impl FromStr for MemberStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(MemberStatus::Active),
            "withdrawn" => Ok(MemberStatus::Withdrawn),
            other => Err(UnknownValue::new("member status", other)),
        }
    }
}

/// A valid e-mail address: trimmed, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let email = raw.trim().to_lowercase();
        let invalid = || Err(FieldError::Email);
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return invalid();
        }
        let Some((local, domain)) = email.split_once('@') else {
            return invalid();
        };
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && domain
                .split('.')
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return invalid();
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A phone number reduced to its digits (9–15 of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let digits: String = raw.chars().filter(|c| *c != '-' && *c != ' ').collect();
        if digits.chars().all(|c| c.is_ascii_digit()) && (9..=15).contains(&digits.len()) {
            Ok(Self(digits))
        } else {
            Err(FieldError::Phone)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A plain-text password that satisfies the length policy. Never printed.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let len = raw.chars().count();
        if (PASSWORD_MIN..=PASSWORD_MAX).contains(&len) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FieldError::Length {
                min: PASSWORD_MIN,
                max: PASSWORD_MAX,
            })
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A validated sign-up (or staff creation) request.
#[derive(Debug, Clone)]
pub struct NewMember {
    pub email: Email,
    pub password: Password,
    pub name: String,
    pub phone: Phone,
}

impl NewMember {
    pub fn parse(email: &str, password: &str, name: &str, phone: &str) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let email = errors.check("email", Email::parse(email));
        let password = errors.check("password", Password::parse(password));
        let name = errors.check("name", text(name, 1, 50));
        let phone = errors.check("phone", Phone::parse(phone));
        match (email, password, name, phone) {
            (Some(email), Some(password), Some(name), Some(phone)) if errors.is_empty() => Ok(Self {
                email,
                password,
                name,
                phone,
            }),
            _ => Err(errors),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    #[error("the member has withdrawn")]
    NotActive,
    #[error("the member has already withdrawn")]
    AlreadyWithdrawn,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub id: MemberId,
    pub email: String,
    pub name: String,
    pub phone: String,
    /// argon2id PHC string; empty once anonymised.
    #[serde(skip_serializing)]
    pub password_hash: String,
    pub role: Role,
    pub status: MemberStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_login_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub withdrawn_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub anonymised_at: Option<OffsetDateTime>,
}

impl Member {
    /// A new active member. Emits `member.registered`.
    pub fn register(
        id: MemberId,
        new: &NewMember,
        password_hash: String,
        role: Role,
        now: OffsetDateTime,
    ) -> (Self, EventPayload) {
        let member = Self {
            id,
            email: new.email.as_str().to_owned(),
            name: new.name.clone(),
            phone: new.phone.as_str().to_owned(),
            password_hash,
            role,
            status: MemberStatus::Active,
            created_at: now,
            last_login_at: None,
            withdrawn_at: None,
            anonymised_at: None,
        };
        let event = EventPayload::MemberRegistered {
            member_id: id,
            role,
            registered_at: now,
        };
        (member, event)
    }

    pub fn is_active(&self) -> bool {
        self.status == MemberStatus::Active
    }

    /// Only active members may log in; a successful login records the time.
    pub fn record_login(&mut self, now: OffsetDateTime) -> Result<(), MemberError> {
        if !self.is_active() {
            return Err(MemberError::NotActive);
        }
        self.last_login_at = Some(now);
        Ok(())
    }

    /// active → withdrawn. Emits `member.withdrawn`, which expires the member's insurance.
    pub fn withdraw(&mut self, now: OffsetDateTime) -> Result<EventPayload, MemberError> {
        if !self.is_active() {
            return Err(MemberError::AlreadyWithdrawn);
        }
        self.status = MemberStatus::Withdrawn;
        self.withdrawn_at = Some(now);
        Ok(EventPayload::MemberWithdrawn {
            member_id: self.id,
            withdrawn_at: now,
        })
    }

    /// Withdrawn at least [`ANONYMISE_AFTER`] ago and not anonymised yet.
    pub fn is_due_for_anonymisation(&self, now: OffsetDateTime) -> bool {
        self.anonymised_at.is_none()
            && self
                .withdrawn_at
                .is_some_and(|withdrawn| withdrawn + ANONYMISE_AFTER <= now)
    }

    /// Replaces personal data with placeholders that keep the unique e-mail constraint.
    pub fn anonymise(&mut self, now: OffsetDateTime) {
        self.email = format!("withdrawn+{}@anonymised.invalid", self.id);
        self.name = "withdrawn member".to_owned();
        self.phone = "000000000".to_owned();
        self.password_hash = String::new();
        self.anonymised_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use uuid::Uuid;

    fn member() -> Member {
        let new =
            NewMember::parse(" Rider@Example.COM ", "correct horse battery", "Kim", "010-1234-5678").expect("valid");
        Member::register(
            MemberId(Uuid::nil()),
            &new,
            "hash".into(),
            Role::Rider,
            datetime!(2026-01-01 0:00 UTC),
        )
        .0
    }

    #[test]
    fn sign_up_normalises_email_and_phone() {
        let m = member();
        assert_eq!(m.email, "rider@example.com");
        assert_eq!(m.phone, "01012345678");
        assert_eq!(m.role, Role::Rider);
        assert!(m.is_active());
    }

    #[test]
    fn sign_up_reports_every_invalid_field() {
        let errors = NewMember::parse("nope", "short", "", "12ab").expect_err("invalid");
        let fields: Vec<_> = errors.fields().keys().cloned().collect();
        assert_eq!(fields, ["email", "name", "password", "phone"]);
    }

    #[test]
    fn email_rules() {
        assert!(Email::parse("a@b.co").is_ok());
        assert!(Email::parse("a@b").is_err());
        assert!(Email::parse("@b.co").is_err());
        assert!(Email::parse("a b@c.co").is_err());
        assert!(Email::parse("a@@b.co").is_err());
        assert!(Email::parse("a@b..co").is_err());
    }

    #[test]
    fn phone_and_name_bounds() {
        assert!(Phone::parse("12345678").is_err());
        assert!(Phone::parse("123 456 789").is_ok());
        assert!(Phone::parse("1234567890123456").is_err());
        assert!(NewMember::parse("a@b.co", "0123456789", &"x".repeat(51), "123456789").is_err());
        assert!(NewMember::parse("a@b.co", "0123456789", &"가".repeat(50), "123456789").is_ok());
    }

    #[test]
    fn password_is_never_printed() {
        let p = Password::parse("super secret password").expect("valid");
        assert_eq!(format!("{p:?}"), "Password(***)");
        assert!(Password::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn withdrawal_is_once_and_blocks_login() {
        let mut m = member();
        let at = datetime!(2026-02-01 0:00 UTC);
        let event = m.withdraw(at).expect("active");
        assert_eq!(
            event,
            EventPayload::MemberWithdrawn {
                member_id: m.id,
                withdrawn_at: at
            }
        );
        assert_eq!(m.withdraw(at), Err(MemberError::AlreadyWithdrawn));
        assert_eq!(m.record_login(at), Err(MemberError::NotActive));
    }

    #[test]
    fn anonymisation_is_due_sixty_days_after_withdrawal() {
        let mut m = member();
        let at = datetime!(2026-02-01 0:00 UTC);
        m.withdraw(at).expect("active");
        assert!(!m.is_due_for_anonymisation(at + Duration::days(59)));
        assert!(m.is_due_for_anonymisation(at + Duration::days(60)));
        m.anonymise(at + Duration::days(60));
        assert!(!m.is_due_for_anonymisation(at + Duration::days(61)));
        assert!(!m.email.contains("example.com"));
        assert!(m.password_hash.is_empty());
    }
}
