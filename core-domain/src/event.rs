//! Domain events and their wire envelope `{id, type, occurred_at, aggregate_id, data}`.
//!
//! Events are written to the outbox in the same transaction as the change that caused them,
//! then relayed (Kafka or in-process). The aggregate id is the Kafka key, so the events of
//! one aggregate keep their order.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::insurance::{Actor, ExpiryReason};
use crate::member::Role;
use crate::{EventId, Krw, MemberId, OrderId, PaymentId, PolicyId, ProductId};

pub const MEMBER_EVENTS: &str = "member-events";
pub const INSURANCE_EVENTS: &str = "insurance-events";
pub const PAYMENT_EVENTS: &str = "payment-events";
/// Every topic the application publishes to.
pub const TOPICS: [&str; 3] = [MEMBER_EVENTS, INSURANCE_EVENTS, PAYMENT_EVENTS];

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PaidItem {
    pub product_id: ProductId,
    pub quantity: i64,
    pub unit_price: Krw,
}

/// What happened. Serialized adjacently tagged: `"type"` and `"data"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum EventPayload {
    #[serde(rename = "member.registered")]
    MemberRegistered {
        member_id: MemberId,
        role: Role,
        #[serde(with = "time::serde::rfc3339")]
        registered_at: OffsetDateTime,
    },
    #[serde(rename = "member.withdrawn")]
    MemberWithdrawn {
        member_id: MemberId,
        #[serde(with = "time::serde::rfc3339")]
        withdrawn_at: OffsetDateTime,
    },
    #[serde(rename = "member.licence_suspended")]
    LicenceSuspended {
        member_id: MemberId,
        reason: String,
        #[serde(with = "time::serde::rfc3339")]
        suspended_at: OffsetDateTime,
    },
    #[serde(rename = "insurance.policy_expired")]
    PolicyExpired {
        policy_id: PolicyId,
        member_id: MemberId,
        policy_number: String,
        #[serde(with = "time::serde::rfc3339")]
        expired_at: OffsetDateTime,
        reason: ExpiryReason,
        expired_by: Actor,
        #[serde(with = "time::serde::rfc3339::option")]
        previous_expired_at: Option<OffsetDateTime>,
    },
    #[serde(rename = "payment.succeeded")]
    PaymentSucceeded {
        payment_id: PaymentId,
        order_id: OrderId,
        member_id: MemberId,
        amount: Krw,
        items: Vec<PaidItem>,
        #[serde(with = "time::serde::rfc3339")]
        paid_at: OffsetDateTime,
    },
}

impl EventPayload {
    pub fn event_type(&self) -> &'static str {
        match self {
            EventPayload::MemberRegistered { .. } => "member.registered",
            EventPayload::MemberWithdrawn { .. } => "member.withdrawn",
            EventPayload::LicenceSuspended { .. } => "member.licence_suspended",
            EventPayload::PolicyExpired { .. } => "insurance.policy_expired",
            EventPayload::PaymentSucceeded { .. } => "payment.succeeded",
        }
    }

    pub fn topic(&self) -> &'static str {
        match self {
            EventPayload::MemberRegistered { .. }
            | EventPayload::MemberWithdrawn { .. }
            | EventPayload::LicenceSuspended { .. } => MEMBER_EVENTS,
            EventPayload::PolicyExpired { .. } => INSURANCE_EVENTS,
            EventPayload::PaymentSucceeded { .. } => PAYMENT_EVENTS,
        }
    }

    /// The aggregate whose events must stay in order: the member, the policy, the order.
    pub fn aggregate_id(&self) -> Uuid {
        match self {
            EventPayload::MemberRegistered { member_id, .. }
            | EventPayload::MemberWithdrawn { member_id, .. }
            | EventPayload::LicenceSuspended { member_id, .. } => member_id.0,
            EventPayload::PolicyExpired { policy_id, .. } => policy_id.0,
            EventPayload::PaymentSucceeded { order_id, .. } => order_id.0,
        }
    }
}

/// A domain event as it travels: `{id, type, occurred_at, aggregate_id, data}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DomainEvent {
    pub id: EventId,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    pub aggregate_id: Uuid,
    #[serde(flatten)]
    pub payload: EventPayload,
}

impl DomainEvent {
    pub fn new(id: EventId, occurred_at: OffsetDateTime, payload: EventPayload) -> Self {
        Self {
            id,
            occurred_at,
            aggregate_id: payload.aggregate_id(),
            payload,
        }
    }

    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    pub fn topic(&self) -> &'static str {
        self.payload.topic()
    }

    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(raw: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_envelope_has_the_documented_shape_and_round_trips() {
        let member = MemberId(Uuid::now_v7());
        let at = datetime!(2026-05-01 0:00 UTC);
        let event = DomainEvent::new(
            EventId(Uuid::now_v7()),
            at,
            EventPayload::MemberWithdrawn {
                member_id: member,
                withdrawn_at: at,
            },
        );
        let json: serde_json::Value = serde_json::from_str(&event.to_json()).expect("json");
        assert_eq!(json["type"], "member.withdrawn");
        assert_eq!(json["aggregate_id"], member.to_string());
        assert_eq!(json["data"]["withdrawn_at"], "2026-05-01T00:00:00Z");
        assert_eq!(json["occurred_at"], "2026-05-01T00:00:00Z");
        assert_eq!(
            DomainEvent::from_json(event.to_json().as_bytes()).expect("parse"),
            event
        );
        assert_eq!(event.topic(), MEMBER_EVENTS);
    }

    #[test]
    fn an_unknown_type_does_not_parse() {
        let raw = br#"{"id":"0190d9a0-0000-7000-8000-000000000000","type":"x.y","occurred_at":"2026-05-01T00:00:00Z","aggregate_id":"0190d9a0-0000-7000-8000-000000000000","data":{}}"#;
        assert!(DomainEvent::from_json(raw).is_err());
    }
}
