//! Members: round trip of every field, the unique e-mail, search and the anonymisation scan.

use time::Duration;

use core_domain::MemberId;
use core_domain::member::{Member, MemberStatus, NewMember, Role};
use ports::{Consistency, MemberPattern, MemberQuery, PageRequest, StoreError, Unique};
use uuid::Uuid;

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

/// The e-mails of one page of `pattern`, after `after`, at most `limit`.
async fn search(stores: &Stores, pattern: MemberPattern, after: Option<&str>, limit: i64) -> Vec<String> {
    let query = MemberQuery {
        pattern,
        page: PageRequest {
            after: after.map(str::to_owned),
            limit,
        },
    };
    stores
        .members
        .search_members(&query, Consistency::Eventual)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.email)
        .collect()
}

fn prefix(p: &str) -> MemberPattern {
    MemberPattern::EmailPrefix(p.to_owned())
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
    assert_eq!(
        search(&stores, prefix("kim."), None, 10).await,
        ["kim.a@example.com", "kim.b@example.com"]
    );
    // `_` and `%` are plain characters, not patterns.
    assert_eq!(search(&stores, prefix("kim_"), None, 10).await, ["kim_c@example.com"]);
    assert_eq!(search(&stores, prefix("kim."), None, 1).await, ["kim.a@example.com"]);
    assert_eq!(search(&stores, prefix("kim"), None, 10).await.len(), 4);
    assert!(search(&stores, prefix("nobody"), None, 10).await.is_empty());
    // The next page starts after the last e-mail of this one.
    assert_eq!(
        search(&stores, prefix("kim."), Some("kim.a@example.com"), 10).await,
        ["kim.b@example.com"]
    );
}

/// Stores a rider with this name and phone.
async fn stored_person(stores: &Stores, email: &str, name: &str, phone: &str) {
    let new = NewMember::parse(email, "correct horse battery", name, phone).expect("valid sign-up");
    let (member, _) = Member::register(MemberId(Uuid::now_v7()), &new, "phc".to_owned(), Role::Rider, now());
    let mut uow = stores.db.begin().await.unwrap();
    uow.members().insert(&member).await.unwrap();
    uow.commit().await.unwrap();
}

pub async fn members_are_found_by_any_part_of_email_name_or_phone(stores: Stores) {
    stored_person(&stores, "minsu@example.com", "김민수", "010-4821-7788").await;
    stored_person(&stores, "Jane.Doe@example.com", "Jane Doe", "010-1111-2222").await;
    stored_person(&stores, "under@example.com", "a_b", "010-3333-4444").await;
    stored_person(&stores, "plain@example.com", "axb", "010-5555-6666").await;
    let anywhere = |text: &str, digits: &str| MemberPattern::Anywhere {
        text: text.to_owned(),
        digits: digits.to_owned(),
    };
    // Part of the phone (stored as digits).
    assert_eq!(
        search(&stores, anywhere("4821-77", "482177"), None, 10).await,
        ["minsu@example.com"]
    );
    // Part of the name, and of the e-mail whatever its case (names and e-mails are matched
    // lower-cased; the caller lower-cases the text).
    assert_eq!(
        search(&stores, anywhere("민수", ""), None, 10).await,
        ["minsu@example.com"]
    );
    assert_eq!(
        search(&stores, anywhere("jane d", ""), None, 10).await,
        ["jane.doe@example.com"]
    );
    assert_eq!(
        search(&stores, anywhere("doe@", ""), None, 10).await,
        ["jane.doe@example.com"]
    );
    // Text that is no phone matches no phone: "2222" is in Jane's phone only.
    assert!(search(&stores, anywhere("2222", ""), None, 10).await.is_empty());
    // `_` and `%` are literal.
    assert_eq!(
        search(&stores, anywhere("a_b", ""), None, 10).await,
        ["under@example.com"]
    );
    assert!(search(&stores, anywhere("%", ""), None, 10).await.is_empty());
    // Pages by e-mail, without overlap.
    let all = anywhere("example.com", "");
    let first = search(&stores, all.clone(), None, 2).await;
    assert_eq!(first, ["jane.doe@example.com", "minsu@example.com"]);
    let rest = search(&stores, all, first.last().map(String::as_str), 2).await;
    assert_eq!(rest, ["plain@example.com", "under@example.com"]);
}

pub async fn members_are_found_by_digits_in_any_field_and_by_a_changed_phone(stores: Stores) {
    stored_person(&stores, "minsu@example.com", "김민수", "010-4821-7788").await;
    stored_person(&stores, "kim7788@example.com", "김철수", "010-9999-0000").await;
    stored_person(&stores, "lee@example.com", "이영희", "010-1234-5678").await;
    let anywhere = |text: &str, digits: &str| MemberPattern::Anywhere {
        text: text.to_owned(),
        digits: digits.to_owned(),
    };
    // Digits alone match the phone and the e-mail alike, whatever their number (three,
    // four, a whole phone).
    assert_eq!(
        search(&stores, anywhere("7788", "7788"), None, 10).await,
        ["kim7788@example.com", "minsu@example.com"]
    );
    assert_eq!(
        search(&stores, anywhere("788", "788"), None, 10).await,
        ["kim7788@example.com", "minsu@example.com"]
    );
    assert_eq!(
        search(&stores, anywhere("01048217788", "01048217788"), None, 10).await,
        ["minsu@example.com"]
    );
    // Typed with a dash: the digits match the phone, the text as typed nothing else.
    assert_eq!(
        search(&stores, anywhere("1234-56", "123456"), None, 10).await,
        ["lee@example.com"]
    );
    // Digits that are in no field in a row match nobody, though each part is somewhere.
    assert!(
        search(&stores, anywhere("77889999", "77889999"), None, 10)
            .await
            .is_empty()
    );

    // A changed phone is found by its new digits only.
    let mut minsu = stores
        .members
        .member_by_email("minsu@example.com", Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    minsu.phone = "01055554444".to_owned();
    let mut uow = stores.db.begin().await.unwrap();
    uow.members().update(&minsu).await.unwrap();
    uow.commit().await.unwrap();
    assert!(
        search(&stores, anywhere("48217788", "48217788"), None, 10)
            .await
            .is_empty()
    );
    assert_eq!(
        search(&stores, anywhere("7788", "7788"), None, 10).await,
        ["kim7788@example.com"]
    );
    assert_eq!(
        search(&stores, anywhere("5555-44", "555544"), None, 10).await,
        ["minsu@example.com"]
    );
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
    uow.commit().await.unwrap();

    // The work list (a read): withdrawn by the cutoff, not anonymised, by id, after a key.
    let mut due = vec![long_gone.clone(), at_cutoff.clone()];
    due.sort_by_key(|m| m.id);
    let ids: Vec<MemberId> = due.iter().map(|m| m.id).collect();
    let list = |after, limit| {
        stores
            .members
            .members_to_anonymise(cutoff, after, limit, Consistency::Strong)
    };
    assert_eq!(list(None, 10).await.unwrap(), ids);
    assert_eq!(list(None, 1).await.unwrap(), ids[..1]);
    assert_eq!(list(Some(ids[0]), 10).await.unwrap(), ids[1..]);
    let count = |after| {
        stores
            .members
            .count_members_to_anonymise(cutoff, after, Consistency::Strong)
    };
    assert_eq!((count(None).await.unwrap(), count(Some(ids[0])).await.unwrap()), (2, 1));

    // The chunk's re-check (locked): of the ids given, only those still due.
    let mut uow = stores.db.begin().await.unwrap();
    let all = [long_gone.id, at_cutoff.id, recent.id, done.id, active.id];
    assert_eq!(uow.members().to_anonymise(&all, cutoff).await.unwrap(), due);
    assert_eq!(
        uow.members().to_anonymise(&[long_gone.id], cutoff).await.unwrap(),
        vec![long_gone]
    );
}
