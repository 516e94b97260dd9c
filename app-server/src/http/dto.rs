//! Request and response bodies of the HTTP API, with their OpenAPI schemas. Domain types
//! stay free of HTTP concerns; these convert from them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use core_domain::catalog::{PopularProduct, Product};
use core_domain::coupon::{Coupon, CouponCampaign, Discount};
use core_domain::insurance::{DrivingSession, InsurancePlan, Policy, Statement};
use core_domain::member::Member;
use core_domain::order::{Order, Payment};
use core_domain::wallet::LedgerEntry;

/// `{items: [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub items: Vec<T>,
}

impl<T> List<T> {
    pub fn of<D>(items: impl IntoIterator<Item = D>, f: impl Fn(D) -> T) -> Self {
        Self {
            items: items.into_iter().map(f).collect(),
        }
    }
}

/// An optional field that, when present, holds a value: `null` is refused like any other
/// wrong type, as the OpenAPI document (not nullable) says.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A JSON integer, also when written with a zero fraction (`5.0`): JSON Schema's `integer`
/// admits both, so a client that writes numbers as floats is not refused.
fn integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(value) = number.as_i64() {
        return Ok(value);
    }
    match number.as_f64() {
        // Within ±2^63 (exclusive), a float without a fraction is an i64 exactly.
        #[allow(clippy::cast_possible_truncation)]
        Some(f) if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_775e18 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format_args!(
            "invalid type: {number}, expected an integer"
        ))),
    }
}

/// [`integer`] for an optional field: present means a value.
fn present_integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    integer(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignUpBody {
    /// Stored in lower case; unique.
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    /// 10–128 characters.
    #[schema(min_length = 10, max_length = 128)]
    pub password: String,
    /// 1–50 characters after trimming.
    #[schema(min_length = 1, max_length = 50, pattern = "\\S")]
    pub name: String,
    /// 9–15 digits; dashes and spaces are allowed and dropped.
    #[schema(pattern = "^[- ]*([0-9][- ]*){9,15}$")]
    pub phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberBody {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub phone: String,
    /// `rider`, `cx` or `admin`.
    pub role: String,
    /// `active` or `withdrawn`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub withdrawn_at: Option<OffsetDateTime>,
}

impl From<Member> for MemberBody {
    fn from(m: Member) -> Self {
        Self {
            id: m.id.0,
            email: m.email,
            name: m.name,
            phone: m.phone,
            role: m.role.as_str().to_owned(),
            status: m.status.as_str().to_owned(),
            created_at: m.created_at,
            withdrawn_at: m.withdrawn_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshBody {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenBody {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Enrolment names a plan, whose premium the policy takes: a premium is never the rider's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolBody {
    /// An offered plan (`GET /insurance/plans`).
    pub plan_id: Uuid,
    /// The insurer's reference, if the rider has one (unique); else the server assigns one.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    pub policy_number: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewPlanBody {
    /// 1–100 characters after trimming.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    /// KRW per insured hour, billed by the minute.
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub hourly_premium: i64,
}

/// Any of the fields; a premium change applies to enrolments from now on.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(min_properties = 1)]
pub struct PlanPatchBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present_integer")]
    #[schema(nullable = false, minimum = 1, maximum = 1_000_000)]
    pub hourly_premium: Option<i64>,
    /// `active` (riders can enrol) or `retired`.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, pattern = "^(active|retired)$")]
    pub status: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanBody {
    pub id: Uuid,
    pub name: String,
    pub hourly_premium: i64,
    /// `active` (riders can enrol) or `retired`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<InsurancePlan> for PlanBody {
    fn from(p: InsurancePlan) -> Self {
        Self {
            id: p.id.0,
            name: p.name,
            hourly_premium: p.hourly_premium,
            status: p.status.as_str().to_owned(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyBody {
    pub id: Uuid,
    pub member_id: Uuid,
    /// Assigned by the server at enrolment.
    pub policy_number: String,
    /// The plan it was written on (none for policies from before plans).
    pub plan_id: Option<Uuid>,
    /// The plan's premium at enrolment, in KRW per insured hour.
    pub hourly_premium: i64,
    /// `active` or `expired`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub coverage_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expired_at: Option<OffsetDateTime>,
    /// `member_withdrawn`, `insurer_cancellation` or `admin_request`.
    pub expiry_reason: Option<String>,
    /// Who set the expiry: `member:<id>`, `staff:<id>`, `insurer`, `system:<job>`.
    pub expired_by: Option<String>,
    pub version: i64,
}

impl From<Policy> for PolicyBody {
    fn from(p: Policy) -> Self {
        Self {
            id: p.id.0,
            member_id: p.member_id.0,
            policy_number: p.policy_number,
            plan_id: p.plan_id.map(|id| id.0),
            hourly_premium: p.hourly_premium,
            status: p.status.as_str().to_owned(),
            coverage_start: p.coverage_start,
            expired_at: p.expired_at,
            expiry_reason: p.expiry_reason.map(|r| r.as_str().to_owned()),
            expired_by: p.expired_by.map(|a| a.to_string()),
            version: p.version,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    pub id: Uuid,
    pub policy_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub insured_minutes: i64,
    pub premium: i64,
}

impl SessionBody {
    pub fn new(s: DrivingSession, insured_minutes: i64, premium: i64) -> Self {
        Self {
            id: s.id.0,
            policy_id: s.policy_id.0,
            started_at: s.started_at,
            ended_at: s.ended_at,
            insured_minutes,
            premium,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatementBody {
    pub policy_id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    /// One page of the period's sessions, oldest first.
    pub sessions: Vec<SessionBody>,
    /// Of every session in the period, not only this page's.
    pub insured_minutes: i64,
    /// Of every session in the period, not only this page's.
    pub premium: i64,
    /// The cursor of the next page of sessions, `null` on the last one.
    #[schema(required = true)]
    pub next: Option<String>,
}

impl From<Statement> for StatementBody {
    fn from(s: Statement) -> Self {
        Self {
            policy_id: s.policy_id.0,
            from: s.from,
            to: s.to,
            insured_minutes: s.insured_minutes,
            premium: s.premium,
            next: None,
            sessions: s
                .sessions
                .into_iter()
                .map(|l| SessionBody {
                    id: l.session_id.0,
                    policy_id: s.policy_id.0,
                    started_at: l.started_at,
                    ended_at: l.ended_at,
                    insured_minutes: l.insured_minutes,
                    premium: l.premium,
                })
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CancellationBody {
    /// The insurer's id of this notification; repeats are ignored.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub event_id: String,
    pub policy_number: String,
    /// RFC 3339: when the insurer cancelled the policy.
    #[schema(format = DateTime)]
    pub cancelled_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ExpireBody {
    /// RFC 3339, between the coverage start and now.
    #[schema(format = DateTime)]
    pub effective_at: String,
    /// `admin_request` (default), `insurer_cancellation` or `member_withdrawn`.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        nullable = false,
        pattern = "^(admin_request|insurer_cancellation|member_withdrawn)$"
    )]
    pub reason: Option<String>,
    /// What the staff member writes about the change, for the audit trail (1–1000
    /// characters once trimmed).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, min_length = 1, max_length = 1000, pattern = "\\S")]
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewProductBody {
    /// 1–100 characters after trimming.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub price: i64,
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub stock: i64,
}

/// `price`, `stock` or both.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(min_properties = 1)]
pub struct ProductPatchBody {
    #[serde(default, deserialize_with = "present_integer")]
    #[schema(nullable = false, minimum = 1, maximum = 100_000_000)]
    pub price: Option<i64>,
    #[serde(default, deserialize_with = "present_integer")]
    #[schema(nullable = false, minimum = 0, maximum = 1_000_000)]
    pub stock: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductBody {
    pub id: Uuid,
    pub name: String,
    pub price: i64,
    pub stock: i64,
    /// Units sold in the popularity window (popular products only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units_sold: Option<i64>,
}

impl From<Product> for ProductBody {
    fn from(p: Product) -> Self {
        Self {
            id: p.id.0,
            name: p.name,
            price: p.price,
            stock: p.stock,
            units_sold: None,
        }
    }
}

impl From<PopularProduct> for ProductBody {
    fn from(p: PopularProduct) -> Self {
        Self {
            units_sold: Some(p.units_sold),
            ..p.product.into()
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WalletBody {
    pub balance: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChargeBody {
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerBody {
    pub id: Uuid,
    /// `charge`, `payment` or `refund`.
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub reference: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<LedgerEntry> for LedgerBody {
    fn from(e: LedgerEntry) -> Self {
        Self {
            id: e.id.0,
            kind: e.kind.as_str().to_owned(),
            amount: e.amount,
            balance_after: e.balance_after,
            reference: e.reference,
            created_at: e.created_at,
        }
    }
}

/// `{kind: "fixed", amount}` or `{kind: "percent", percent}`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DiscountBody {
    Fixed {
        #[serde(deserialize_with = "integer")]
        #[schema(minimum = 1, maximum = 10_000_000)]
        amount: i64,
    },
    Percent {
        #[serde(deserialize_with = "integer")]
        #[schema(minimum = 1, maximum = 100)]
        percent: i64,
    },
}

impl From<DiscountBody> for Discount {
    fn from(d: DiscountBody) -> Self {
        match d {
            DiscountBody::Fixed { amount } => Discount::Fixed { amount },
            DiscountBody::Percent { percent } => Discount::Percent { percent },
        }
    }
}

impl From<Discount> for DiscountBody {
    fn from(d: Discount) -> Self {
        match d {
            Discount::Fixed { amount } => DiscountBody::Fixed { amount },
            Discount::Percent { percent } => DiscountBody::Percent { percent },
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewCampaignBody {
    /// 1–100 characters after trimming.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    pub discount: DiscountBody,
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub total_quantity: i64,
    /// RFC 3339; default now.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, format = DateTime)]
    pub starts_at: Option<String>,
    /// RFC 3339, after `starts_at`; default none (coupons then last 30 days).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, format = DateTime)]
    pub ends_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignBody {
    pub id: Uuid,
    pub name: String,
    pub discount: DiscountBody,
    pub total_quantity: i64,
    pub issued_count: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ends_at: Option<OffsetDateTime>,
}

impl From<CouponCampaign> for CampaignBody {
    fn from(c: CouponCampaign) -> Self {
        Self {
            id: c.id.0,
            name: c.name,
            discount: c.discount.into(),
            total_quantity: c.total_quantity,
            issued_count: c.issued_count,
            starts_at: c.starts_at,
            ends_at: c.ends_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CouponBody {
    pub id: Uuid,
    pub campaign_id: Uuid,
    /// `available`, `used` or `expired`.
    pub status: String,
    pub discount: DiscountBody,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl CouponBody {
    pub fn at(c: Coupon, now: OffsetDateTime) -> Self {
        Self {
            id: c.id.0,
            campaign_id: c.campaign_id.0,
            status: c.status_at(now).as_str().to_owned(),
            discount: c.discount.into(),
            expires_at: c.expires_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OrderItemBody {
    pub product_id: Uuid,
    #[serde(deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewOrderBody {
    /// 1–20 lines, each product once.
    #[schema(min_items = 1, max_items = 20)]
    pub items: Vec<OrderItemBody>,
    /// One of the caller's available coupons.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub coupon_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLineBody {
    pub product_id: Uuid,
    pub product_name: String,
    pub unit_price: i64,
    pub quantity: i64,
    pub line_total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderBody {
    pub id: Uuid,
    /// `pending`, `paid` or `cancelled`.
    pub status: String,
    pub items: Vec<OrderLineBody>,
    pub subtotal: i64,
    pub discount: i64,
    pub total: i64,
    pub coupon_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<Order> for OrderBody {
    fn from(o: Order) -> Self {
        Self {
            id: o.id.0,
            status: o.status.as_str().to_owned(),
            items: o
                .items
                .into_iter()
                .map(|l| OrderLineBody {
                    product_id: l.product_id.0,
                    product_name: l.product_name,
                    unit_price: l.unit_price,
                    quantity: l.quantity,
                    line_total: l.line_total,
                })
                .collect(),
            subtotal: o.subtotal,
            discount: o.discount,
            total: o.total,
            coupon_id: o.coupon_id.map(|c| c.0),
            created_at: o.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentBody {
    pub id: Uuid,
    pub order_id: Uuid,
    pub amount: i64,
    /// `succeeded`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<Payment> for PaymentBody {
    fn from(p: Payment) -> Self {
        Self {
            id: p.id.0,
            order_id: p.order_id.0,
            amount: p.amount,
            status: p.status.as_str().to_owned(),
            created_at: p.created_at,
        }
    }
}

/// Parses an RFC 3339 field, or a 422 naming it. A time that is valid in its own offset but
/// not representable in UTC (e.g. `9999-12-31T23:59:59-23:59`) is refused, not a panic.
pub fn parse_time(field: &str, raw: &str) -> Result<OffsetDateTime, super::error::ApiError> {
    OffsetDateTime::parse(raw.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| t.checked_to_offset(time::UtcOffset::UTC))
        .ok_or_else(|| super::error::ApiError::invalid_field(field, "must be an RFC 3339 date-time"))
}

#[cfg(test)]
mod request_tests {
    use super::*;

    #[test]
    fn integers_may_carry_a_zero_fraction_but_no_other() {
        let charge = |raw: &str| serde_json::from_str::<ChargeBody>(raw).map(|b| b.amount);
        assert_eq!(charge(r#"{"amount": 5}"#).ok(), Some(5));
        assert_eq!(charge(r#"{"amount": 5.0}"#).ok(), Some(5));
        assert_eq!(charge(r#"{"amount": -2.0e3}"#).ok(), Some(-2_000));
        for bad in [
            r#"{"amount": 5.5}"#,
            r#"{"amount": 1e19}"#,
            r#"{"amount": "5"}"#,
            r#"{"amount": null}"#,
        ] {
            assert!(charge(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_optional_field_is_absent_or_a_value_never_null() {
        let patch = |raw: &str| serde_json::from_str::<ProductPatchBody>(raw).map(|b| (b.price, b.stock));
        assert_eq!(patch(r#"{"price": 7.0}"#).ok(), Some((Some(7), None)));
        assert_eq!(patch("{}").ok(), Some((None, None)));
        assert!(patch(r#"{"price": null}"#).is_err());
        let order = serde_json::from_str::<NewOrderBody>(r#"{"items": [], "coupon_id": null}"#);
        assert!(order.is_err());
    }
}
