//! Typed identifiers. All ids are UUIDv7 (time-ordered), minted by the `IdSource` port.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! id_type {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    )*};
}

id_type!(
    /// A member (rider or staff).
    MemberId,
    /// An insurance policy.
    PolicyId,
    /// An insurance plan: what staff offer, at an hourly premium.
    PlanId,
    /// A driving session (운행).
    SessionId,
    /// A product of the catalogue.
    ProductId,
    /// A coupon campaign.
    CampaignId,
    /// A coupon issued to one member.
    CouponId,
    /// An order.
    OrderId,
    /// A payment of an order.
    PaymentId,
    /// A domain event (also its Kafka `event_id` header).
    EventId,
    /// A refresh-token family: every token rotated from one login.
    TokenFamilyId,
    /// An audit-log entry.
    AuditId,
    /// A wallet ledger row.
    LedgerId,
);
