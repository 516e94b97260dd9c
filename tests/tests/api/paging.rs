//! Paged lists: `limit` (1–100) and an opaque `cursor` in, `items` and `next` out. Walks go
//! through every page of lists longer than the maximum page while rows are added, and see
//! each row that was there when they started exactly once.

use std::collections::HashSet;
use std::future::Future;

use serde_json::Value;

use core_domain::member::Role;

use crate::helpers::{TestApp, assert_problem, error_fields, fixed_campaign, id, json_body, spawn_app};

/// Walks `path` (with `query`) `limit` items at a time, calling `between` after every page
/// that has a next one: each item's `key` in walk order, and how many pages there were.
async fn walk<F, Fut>(
    app: &TestApp,
    token: &str,
    path: &str,
    query: &[(&str, &str)],
    limit: usize,
    key: &str,
    mut between: F,
) -> (Vec<String>, usize)
where
    F: FnMut() -> Fut,
    Fut: Future,
{
    let limit_text = limit.to_string();
    let (mut seen, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    loop {
        let mut params: Vec<(&str, &str)> = query.to_vec();
        params.push(("limit", &limit_text));
        if let Some(cursor) = &cursor {
            params.push(("cursor", cursor));
        }
        let page = json_body(app.get_query(path, Some(token), &params).await, 200).await;
        pages += 1;
        let items = page["items"].as_array().or(page["sessions"].as_array()).expect("items");
        assert!(items.len() <= limit, "{path}: at most `limit` items");
        seen.extend(items.iter().map(|i| i[key].as_str().expect("a key").to_owned()));
        match page["next"].as_str() {
            Some(next) => {
                assert!(!items.is_empty(), "{path}: a page with a next one is not empty");
                between().await;
                cursor = Some(next.to_owned());
            }
            None => {
                assert!(page["next"].is_null(), "{path}: the last page's next is null");
                return (seen, pages);
            }
        }
    }
}

fn distinct(ids: &[String]) -> usize {
    ids.iter().collect::<HashSet<_>>().len()
}

#[tokio::test]
async fn lists_longer_than_a_page_are_walked_each_row_once_while_rows_are_added() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;

    // The ledger: 105 charges, more than the largest page.
    for _ in 0..105 {
        app.charge(&rider, 10).await;
    }
    let (ledger, pages) = walk(&app, &rider, "/points/history", &[], 100, "id", || {
        app.charge(&rider, 10)
    })
    .await;
    assert_eq!((ledger.len(), distinct(&ledger), pages), (105, 105, 2));
    let (ledger, _) = walk(&app, &rider, "/points/history", &[], 100, "id", || async {}).await;
    assert_eq!(ledger.len(), 106, "the charge made while walking is there");

    // Orders: 101, walked 100 and 7 at a time while more are placed.
    let product = app.create_product(&admin, 100, 1_000).await;
    let place = || async {
        json_body(app.order(&rider, &product["id"], 1).await, 201).await;
    };
    for _ in 0..101 {
        place().await;
    }
    let (orders, pages) = walk(&app, &rider, "/orders", &[], 100, "id", place).await;
    assert_eq!((orders.len(), distinct(&orders), pages), (101, 101, 2));
    let (orders, pages) = walk(&app, &rider, "/orders", &[], 7, "id", place).await;
    assert_eq!((orders.len(), distinct(&orders), pages), (102, 102, 15));
    let first = json_body(app.get("/orders", Some(&rider)).await, 200).await;
    assert_eq!(first["items"].as_array().map(Vec::len), Some(20), "20 by default");
    assert!(first["next"].is_string());

    // Coupons: five campaigns, walked two at a time while a sixth is issued.
    let mut campaigns = Vec::new();
    for _ in 0..6 {
        campaigns.push(app.create_campaign(&admin, &fixed_campaign(500, 10)).await);
    }
    let (app, rider) = (&app, rider.as_str());
    let issue = |campaign: Value| async move {
        let path = format!("/coupons/{}/issue", id(&campaign));
        json_body(app.post_empty(&path, Some(rider)).await, 201).await;
    };
    for campaign in &campaigns[..5] {
        issue(campaign.clone()).await;
    }
    let mut spare = Some(campaigns[5].clone());
    let (coupons, pages) = walk(app, rider, "/coupons", &[], 2, "id", || {
        let campaign = spare.take();
        async move {
            if let Some(campaign) = campaign {
                issue(campaign).await;
            }
        }
    })
    .await;
    assert_eq!((coupons.len(), distinct(&coupons), pages), (5, 5, 3));
}

#[tokio::test]
async fn the_staff_search_policies_and_a_statements_sessions_page_too() {
    let app = spawn_app().await;
    let cx = app.staff(Role::Cx).await;

    // Staff search by e-mail: members signed up while staff page are either on a later
    // page or not, but no member shows twice and none that was there is missed.
    let prefix = format!("pg{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let prefix = prefix.as_str();
    let mut emails = Vec::new();
    for i in 0..7 {
        let email = format!("{prefix}{i}@example.com");
        app.sign_up(&email).await;
        emails.push(email);
    }
    let mut added = 0;
    let (found, pages) = walk(&app, &cx, "/admin/members", &[("email", prefix)], 3, "email", || {
        added += 1;
        let email = format!("{prefix}{}@example.com", 100 + added);
        let app = &app;
        async move {
            app.sign_up(&email).await;
        }
    })
    .await;
    assert_eq!(found.len(), distinct(&found), "no member twice");
    assert!(emails.iter().all(|e| found.contains(e)), "every member that was there");
    assert!(pages >= 3);
    let mut sorted = found.clone();
    sorted.sort();
    assert_eq!(found, sorted, "by e-mail");

    // A statement's sessions: six, two at a time, oldest first, with the totals of all.
    let (member, rider) = app.rider().await;
    app.register_licence(&rider).await;
    let policy = app.enrol(&rider, 6_000).await;
    let drive = || async {
        let session = json_body(app.post_empty("/driving/sessions", Some(&rider)).await, 201).await;
        json_body(
            app.post_empty(&format!("/driving/sessions/{}/end", id(&session)), Some(&rider))
                .await,
            200,
        )
        .await;
    };
    for _ in 0..6 {
        drive().await;
    }
    let now = time::OffsetDateTime::now_utc();
    let (from, to) = (
        crate::helpers::rfc3339(now - time::Duration::hours(1)),
        crate::helpers::rfc3339(now + time::Duration::hours(1)),
    );
    let path = format!("/insurance/policies/{}/statement", id(&policy));
    let period = [("from", from.as_str()), ("to", to.as_str())];
    let (sessions, pages) = walk(&app, &rider, &path, &period, 2, "id", || async {}).await;
    assert_eq!((sessions.len(), distinct(&sessions), pages), (6, 6, 3));
    let whole = json_body(app.get_query(&path, Some(&rider), &period).await, 200).await;
    let paged = json_body(
        app.get_query(&path, Some(&rider), &[period[0], period[1], ("limit", "1")])
            .await,
        200,
    )
    .await;
    assert_eq!(paged["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (&paged["insured_minutes"], &paged["premium"]),
        (&whole["insured_minutes"], &whole["premium"]),
        "a page's totals are the whole period's"
    );

    // Policies, the rider's and as staff see them: one page with no next.
    let mine = json_body(
        app.get_query("/insurance/policies", Some(&rider), &[("limit", "1")])
            .await,
        200,
    )
    .await;
    assert_eq!(mine["items"][0]["id"], policy["id"]);
    assert!(mine["next"].is_null());
    let staff_path = format!("/admin/members/{}/policies", id(&member));
    let theirs = json_body(app.get_query(&staff_path, Some(&cx), &[("limit", "1")]).await, 200).await;
    assert_eq!(theirs["items"][0]["id"], policy["id"]);
}

#[tokio::test]
async fn a_limit_out_of_range_or_a_foreign_cursor_is_a_422_on_that_field() {
    let app = spawn_app().await;
    let (_, rider) = app.rider().await;
    for path in ["/orders", "/points/history", "/coupons", "/insurance/policies"] {
        for limit in ["0", "101", "-1"] {
            let problem = assert_problem(
                app.get_query(path, Some(&rider), &[("limit", limit)]).await,
                422,
                "validation.failed",
            )
            .await;
            assert_eq!(error_fields(&problem), ["limit"], "{path}?limit={limit}");
        }
        for cursor in ["not a cursor", "eyJhdCI6MX0", "bm90IGpzb24"] {
            let problem = assert_problem(
                app.get_query(path, Some(&rider), &[("cursor", cursor)]).await,
                422,
                "validation.failed",
            )
            .await;
            assert_eq!(error_fields(&problem), ["cursor"], "{path}?cursor={cursor}");
        }
    }
    // A cursor of the ledger (a sequence number) is no cursor of the orders (an id).
    for _ in 0..2 {
        app.charge(&rider, 10).await;
    }
    let ledger = json_body(
        app.get_query("/points/history", Some(&rider), &[("limit", "1")]).await,
        200,
    )
    .await;
    let cursor = ledger["next"].as_str().expect("a next page");
    let problem = assert_problem(
        app.get_query("/orders", Some(&rider), &[("cursor", cursor)]).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["cursor"]);
}
