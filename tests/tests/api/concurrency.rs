//! Races with exact outcomes: the single SQLite writer serialises them, and every count must
//! come out exact — no lost update, no oversell, no double debit.

use std::collections::HashSet;

use futures::StreamExt;
use futures::future::join_all;
use reqwest::Response;
use serde_json::{Value, json};

use core_domain::MemberId;
use core_domain::member::Role;
use ports::Consistency;

use crate::helpers::{json_body, spawn_app, spawn_app_with};

/// Status and problem code (if any) of a response.
async fn outcome(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON body");
    (status, body)
}

fn count(outcomes: &[(u16, Value)], status: u16, code: Option<&str>) -> usize {
    outcomes
        .iter()
        .filter(|(s, body)| *s == status && code.is_none_or(|c| body["code"] == c))
        .count()
}

fn member_id(member: &Value) -> MemberId {
    MemberId(member["id"].as_str().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_one_point_charges_end_at_exactly_a_thousand() {
    let app = spawn_app_with(|c| {
        c.database.acquire_timeout = std::time::Duration::from_secs(60);
        c.server.request_timeout = std::time::Duration::from_secs(120);
    })
    .await;
    let (member, token) = app.rider().await;

    let one = json!({ "amount": 1 });
    let responses = join_all((0..1_000).map(|_| app.post("/points/charge", Some(&token), &one))).await;

    let outcomes = join_all(responses.into_iter().map(outcome)).await;
    assert_eq!(count(&outcomes, 200, None), 1_000);
    let mut balances: Vec<i64> = outcomes
        .iter()
        .map(|(_, body)| body["balance"].as_i64().unwrap())
        .collect();
    balances.sort_unstable();
    assert_eq!(
        balances,
        (1..=1_000).collect::<Vec<i64>>(),
        "each charge saw its own balance"
    );
    assert_eq!(app.balance(&token).await, 1_000);

    // The API pages the newest 100 rows; the ledger behind it holds all 1,000.
    let page = app.history(&token).await;
    assert_eq!(page.len(), 100);
    let newest: Vec<i64> = page.iter().map(|r| r["balance_after"].as_i64().unwrap()).collect();
    assert_eq!(newest, (901..=1_000).rev().collect::<Vec<i64>>());
    assert!(page.iter().all(|r| r["kind"] == "charge" && r["amount"] == 1));
    let ledger = app
        .runtime
        .ports
        .wallet
        .ledger(
            member_id(&member),
            &ports::PageRequest::first(5_000),
            Consistency::Strong,
        )
        .await
        .unwrap()
        .items;
    assert_eq!(ledger.len(), 1_000);
    assert!(ledger.iter().all(|e| e.amount == 1 && e.kind.as_str() == "charge"));
    let after: HashSet<i64> = ledger.iter().map(|e| e.balance_after).collect();
    assert_eq!(after, (1..=1_000).collect::<HashSet<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_members_racing_for_fifty_coupons_get_exactly_fifty() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    // The race under test is the issue below. The 200 sign-ups before it go 16 at a time:
    // all at once, they queue past the pool's 5 s acquire timeout (and are rightly answered
    // 503) whenever the database is slowed, as by the scale fill running beside the suite.
    let riders: Vec<_> = futures::stream::iter(0..200)
        .map(|_| app.rider())
        .buffered(16)
        .collect()
        .await;
    let campaign = app
        .create_campaign(
            &admin,
            &json!({ "name": "Flash", "discount": { "kind": "fixed", "amount": 500 }, "total_quantity": 50 }),
        )
        .await;
    let issue = format!("/coupons/{}/issue", campaign["id"].as_str().unwrap());

    let responses = join_all(riders.iter().map(|(_, token)| app.post_empty(&issue, Some(token)))).await;

    let outcomes = join_all(responses.into_iter().map(outcome)).await;
    assert_eq!(count(&outcomes, 201, None), 50);
    assert_eq!(count(&outcomes, 409, Some("coupon.sold_out")), 150);
    let holdings = join_all(riders.iter().map(|(_, token)| async {
        let mine = json_body(app.get("/coupons", Some(token)).await, 200).await;
        mine["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["campaign_id"] == campaign["id"])
            .count()
    }))
    .await;
    for ((status, _), held) in outcomes.iter().zip(&holdings) {
        assert_eq!(
            *held,
            usize::from(*status == 201),
            "a winner holds exactly one coupon, a loser none"
        );
    }
    let id = campaign["id"].as_str().unwrap().parse().unwrap();
    let stored = app
        .runtime
        .ports
        .coupons
        .campaign(core_domain::CampaignId(id), Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.issued_count, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_buyers_racing_for_the_last_five_units_get_exactly_five() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let product = app.create_product(&admin, 2_000, 5).await;
    let buyers = join_all((0..20).map(|_| app.rider())).await;

    let responses = join_all(buyers.iter().map(|(_, token)| app.order(token, &product["id"], 1))).await;

    let outcomes = join_all(responses.into_iter().map(outcome)).await;
    assert_eq!(count(&outcomes, 201, None), 5);
    assert_eq!(count(&outcomes, 409, Some("order.out_of_stock")), 15);
    assert_eq!(app.product_stock(&product["id"]).await, 0);
    let orders = join_all(buyers.iter().map(|(_, token)| async {
        json_body(app.get("/orders", Some(token)).await, 200).await["items"]
            .as_array()
            .unwrap()
            .len()
    }))
    .await;
    assert_eq!(orders.iter().sum::<usize>(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_retried_with_one_idempotency_key_debits_once() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let product = app.create_product(&admin, 3_000, 10).await;
    app.charge(&rider, 10_000).await;
    let first = json_body(app.order(&rider, &product["id"], 1).await, 201).await;
    let second = json_body(app.order(&rider, &product["id"], 1).await, 201).await;

    // Sequential retries.
    let mut sequential = Vec::new();
    for _ in 0..3 {
        sequential.push(json_body(app.pay(&rider, &first["id"], "retry-me").await, 200).await);
    }
    assert!(sequential.iter().all(|p| p == &sequential[0]), "{sequential:?}");
    assert_eq!(sequential[0]["order_id"], first["id"]);
    assert_eq!(sequential[0]["amount"], 3_000);
    assert_eq!(app.balance(&rider).await, 7_000);

    // Ten at once.
    let burst = join_all((0..10).map(|_| app.pay(&rider, &second["id"], "burst"))).await;
    let burst = join_all(burst.into_iter().map(|r| json_body(r, 200))).await;
    let ids: HashSet<String> = burst.iter().map(|p| p["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "{burst:?}");
    assert_ne!(burst[0]["id"], sequential[0]["id"]);
    assert_eq!(burst[0]["order_id"], second["id"]);
    assert_eq!(app.balance(&rider).await, 4_000);

    let payments: Vec<Value> = app
        .history(&rider)
        .await
        .into_iter()
        .filter(|r| r["kind"] == "payment")
        .collect();
    assert_eq!(payments.len(), 2);
    let references: HashSet<String> = payments.iter().map(|r| r["reference"].to_string()).collect();
    assert_eq!(
        references,
        HashSet::from([sequential[0]["id"].to_string(), burst[0]["id"].to_string()])
    );
    assert!(payments.iter().all(|r| r["amount"] == -3_000));
}

#[tokio::test]
async fn concurrent_sign_ups_with_one_email_create_one_member() {
    let app = spawn_app().await;
    let email = crate::helpers::unique_email("twin");

    let responses = join_all((0..10).map(|_| app.sign_up(&email))).await;

    let outcomes = join_all(responses.into_iter().map(outcome)).await;
    assert_eq!(count(&outcomes, 201, None), 1);
    assert_eq!(count(&outcomes, 409, Some("member.email_taken")), 9);
}
