//! Members: round trip of every field, the unique e-mail, search and the anonymisation scan.

use time::Duration;

use core_domain::member::{MemberStatus, Role};
use ports::{Consistency, StoreError, Unique};

use super::{Stores, assert_store_error, now, rider, stored_rider};

pub async fn a_member_round_trips_every_field(stores: Stores) {
    let t0 = now() - Duration::days(2);
    let mut member = rider("round.trip@example.com", t0);
    member.role = Role::Cx;
    let mut uow = stores.db.begin().await.unwrap();
    uow.members().insert(&member).await.unwrap();
    assert_eq!(uow.members().by_id(member.id).await.unwrap(), Some(member.clone()));
    uow.commit().await.unwrap();

    for consistency in [Consistency::Eventual, Consistency::Strong] {
        assert_eq!(
            stores.members.member(member.id, consistency.clone()).await.unwrap(),
            Some(member.clone())
        );
        assert_eq!(
            stores
                .members
                .member_by_email("round.trip@example.com", consistency)
                .await
                .unwrap(),
            Some(member.clone())
        );
    }

    // Every mutable field changes, times keep their microseconds.
    member.record_login(t0 + Duration::microseconds(1_234_567)).unwrap();
    member.withdraw(t0 + Duration::hours(1)).unwrap();
    member.anonymise(t0 + Duration::hours(2) + Duration::microseconds(1));
    member.role = Role::Admin;
    let mut uow = stores.db.begin().await.unwrap();
    uow.members().update(&member).await.unwrap();
    let token = uow.commit().await.unwrap();
    assert!(!token.0.is_empty());

    let stored = stores
        .members
        .member(member.id, Consistency::ReadYourWrites(token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, member);
    assert_eq!(stored.status, MemberStatus::Withdrawn);
    assert_eq!(stored.password_hash, "");
    assert_eq!(
        stores
            .members
            .member_by_email("round.trip@example.com", Consistency::Strong)
            .await
            .unwrap(),
        None
    );
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(uow.members().by_email(&member.email).await.unwrap(), Some(member));
}

pub async fn a_duplicate_email_is_a_member_email_conflict(stores: Stores) {
    let first = stored_rider(&stores, "taken@example.com").await;
    let second = rider("taken@example.com", now());
    let mut uow = stores.db.begin().await.unwrap();
    assert_store_error(
        uow.members().insert(&second).await,
        StoreError::Conflict(Unique::MemberEmail),
    );
    drop(uow);

    // Changing another member's e-mail to a taken one conflicts the same way.
    let mut other = stored_rider(&stores, "other@example.com").await;
    other.email = first.email.clone();
    let mut uow = stores.db.begin().await.unwrap();
    assert_store_error(
        uow.members().update(&other).await,
        StoreError::Conflict(Unique::MemberEmail),
    );
}

pub async fn members_are_searched_by_email_prefix(stores: Stores) {
    for email in [
        "kim.b@example.com",
        "kim.a@example.com",
        "lee@example.com",
        "kim_c@example.com",
        "kimberly@example.com",
    ] {
        stored_rider(&stores, email).await;
    }
    let emails =
        |members: Vec<core_domain::member::Member>| -> Vec<String> { members.into_iter().map(|m| m.email).collect() };
    let found = stores
        .members
        .search_members("kim.", 10, Consistency::Eventual)
        .await
        .unwrap();
    assert_eq!(emails(found), ["kim.a@example.com", "kim.b@example.com"]);
    // `_` and `%` are plain characters, not patterns.
    let found = stores
        .members
        .search_members("kim_", 10, Consistency::Eventual)
        .await
        .unwrap();
    assert_eq!(emails(found), ["kim_c@example.com"]);
    let found = stores
        .members
        .search_members("kim.", 1, Consistency::Eventual)
        .await
        .unwrap();
    assert_eq!(emails(found), ["kim.a@example.com"]);
    let found = stores
        .members
        .search_members("kim", 10, Consistency::Eventual)
        .await
        .unwrap();
    assert_eq!(found.len(), 4);
    let found = stores
        .members
        .search_members("nobody", 10, Consistency::Eventual)
        .await
        .unwrap();
    assert!(found.is_empty());
}

pub async fn members_to_anonymise_are_withdrawn_by_the_cutoff_and_not_anonymised(stores: Stores) {
    let cutoff = now() - Duration::days(60);
    let mut long_gone = rider("long.gone@example.com", cutoff - Duration::days(10));
    long_gone.withdraw(cutoff - Duration::days(1)).unwrap();
    let mut at_cutoff = rider("at.cutoff@example.com", cutoff - Duration::days(10));
    at_cutoff.withdraw(cutoff).unwrap();
    let mut recent = rider("recent@example.com", cutoff - Duration::days(10));
    recent.withdraw(cutoff + Duration::microseconds(1)).unwrap();
    let mut done = rider("done@example.com", cutoff - Duration::days(10));
    done.withdraw(cutoff - Duration::days(5)).unwrap();
    done.anonymise(cutoff);
    let active = rider("active@example.com", cutoff - Duration::days(10));

    let mut uow = stores.db.begin().await.unwrap();
    for m in [&long_gone, &at_cutoff, &recent, &done, &active] {
        uow.members().insert(m).await.unwrap();
    }
    let due = uow.members().to_anonymise(cutoff, 10).await.unwrap();
    assert_eq!(due, vec![long_gone.clone(), at_cutoff]);
    let due = uow.members().to_anonymise(cutoff, 1).await.unwrap();
    assert_eq!(due, vec![long_gone]);
}
