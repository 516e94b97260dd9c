//! Refresh tokens: rotation into the old token's family, reuse detection, revocation, expiry.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use core_domain::{MemberId, TokenFamilyId};
use ports::{RefreshToken, RotateOutcome};

use super::{Stores, now, stored_rider};

/// A token of `member` in `family` expiring at `expires_at` (not stored).
pub fn token(member: MemberId, family: TokenFamilyId, expires_at: OffsetDateTime) -> RefreshToken {
    RefreshToken {
        token_hash: format!("sha256-{}", Uuid::now_v7().simple()),
        member_id: member,
        family_id: family,
        expires_at,
    }
}

pub async fn rotating_a_refresh_token_detects_reuse_and_revokes_the_family(stores: Stores) {
    let m = stored_rider(&stores, "tokens@example.com").await;
    let family = TokenFamilyId(Uuid::now_v7());
    let later = now() + Duration::days(14);
    let t1 = token(m.id, family, later);
    stores.refresh_tokens.insert(&t1).await.unwrap();

    // `new` claims another member and family: the store keeps the old token's.
    let t2 = token(MemberId(Uuid::now_v7()), TokenFamilyId(Uuid::now_v7()), later);
    let rotated = RotateOutcome::Rotated {
        member_id: m.id,
        family_id: family,
    };
    assert_eq!(
        stores.refresh_tokens.rotate(&t1.token_hash, &t2, now()).await.unwrap(),
        rotated
    );
    let t3 = token(m.id, family, later);
    assert_eq!(
        stores.refresh_tokens.rotate(&t2.token_hash, &t3, now()).await.unwrap(),
        rotated
    );

    // Replaying the spent t1 is a reuse: the family, t3 included, is revoked.
    let t4 = token(m.id, family, later);
    assert_eq!(
        stores.refresh_tokens.rotate(&t1.token_hash, &t4, now()).await.unwrap(),
        RotateOutcome::Reused {
            member_id: m.id,
            family_id: family,
        }
    );
    let t5 = token(m.id, family, later);
    assert_eq!(
        stores.refresh_tokens.rotate(&t3.token_hash, &t5, now()).await.unwrap(),
        RotateOutcome::Invalid
    );
    // The reuse did not store t4.
    assert_eq!(
        stores.refresh_tokens.rotate(&t4.token_hash, &t5, now()).await.unwrap(),
        RotateOutcome::Invalid
    );
    assert_eq!(
        stores
            .refresh_tokens
            .rotate("sha256-unknown", &t5, now())
            .await
            .unwrap(),
        RotateOutcome::Invalid
    );
}

pub async fn revoking_a_member_or_a_family_invalidates_their_tokens(stores: Stores) {
    let m = stored_rider(&stores, "revoked@example.com").await;
    let other = stored_rider(&stores, "untouched@example.com").await;
    let later = now() + Duration::days(14);
    let phone = token(m.id, TokenFamilyId(Uuid::now_v7()), later);
    let laptop = token(m.id, TokenFamilyId(Uuid::now_v7()), later);
    let others = token(other.id, TokenFamilyId(Uuid::now_v7()), later);
    let others_second = token(other.id, TokenFamilyId(Uuid::now_v7()), later);
    for t in [&phone, &laptop, &others, &others_second] {
        stores.refresh_tokens.insert(t).await.unwrap();
    }

    stores.refresh_tokens.revoke_member(m.id).await.unwrap();
    stores
        .refresh_tokens
        .revoke_family(others_second.family_id)
        .await
        .unwrap();
    for revoked in [&phone, &laptop, &others_second] {
        let next = token(revoked.member_id, revoked.family_id, later);
        assert_eq!(
            stores
                .refresh_tokens
                .rotate(&revoked.token_hash, &next, now())
                .await
                .unwrap(),
            RotateOutcome::Invalid
        );
    }
    let next = token(other.id, others.family_id, later);
    assert_eq!(
        stores
            .refresh_tokens
            .rotate(&others.token_hash, &next, now())
            .await
            .unwrap(),
        RotateOutcome::Rotated {
            member_id: other.id,
            family_id: others.family_id,
        }
    );
}

pub async fn an_expired_refresh_token_is_invalid(stores: Stores) {
    let m = stored_rider(&stores, "expired@example.com").await;
    let t = now();
    let family = TokenFamilyId(Uuid::now_v7());
    let expired = token(m.id, family, t - Duration::seconds(1));
    let expiring_now = token(m.id, family, t);
    stores.refresh_tokens.insert(&expired).await.unwrap();
    stores.refresh_tokens.insert(&expiring_now).await.unwrap();
    let next = token(m.id, family, t + Duration::days(14));
    for old in [&expired, &expiring_now] {
        assert_eq!(
            stores.refresh_tokens.rotate(&old.token_hash, &next, t).await.unwrap(),
            RotateOutcome::Invalid
        );
    }
    // Still valid a microsecond before it expires.
    let fresh = token(m.id, family, t + Duration::microseconds(1));
    stores.refresh_tokens.insert(&fresh).await.unwrap();
    assert!(matches!(
        stores.refresh_tokens.rotate(&fresh.token_hash, &next, t).await.unwrap(),
        RotateOutcome::Rotated { .. }
    ));
}
