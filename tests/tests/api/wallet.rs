//! Points: charges, the ledger and the balance limits.

use serde_json::json;

use crate::helpers::{assert_problem, error_fields, json_body, spawn_app, time_of};

#[tokio::test]
async fn points_are_charged_and_every_change_is_a_ledger_row() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;

    assert_eq!(
        json_body(app.get("/points", Some(&token)).await, 200).await,
        json!({ "balance": 0 })
    );
    assert_eq!(app.charge(&token, 5_000).await, json!({ "balance": 5_000 }));
    assert_eq!(app.charge(&token, 2_500).await, json!({ "balance": 7_500 }));
    assert_eq!(app.balance(&token).await, 7_500);

    let history = app.history(&token).await;
    let rows: Vec<(&str, i64, i64)> = history
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["amount"].as_i64().unwrap(),
                r["balance_after"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("charge", 2_500, 7_500), ("charge", 5_000, 5_000)]);
    for row in &history {
        assert!(row["reference"].is_null());
        time_of(&row["created_at"]);
    }
}

#[tokio::test]
async fn charges_outside_one_to_a_million_fail_validation() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;

    for amount in [0, -1, 1_000_001] {
        let response = app
            .post("/points/charge", Some(&token), &json!({ "amount": amount }))
            .await;
        assert_eq!(
            error_fields(&assert_problem(response, 422, "validation.failed").await),
            ["amount"],
            "{amount}"
        );
    }
    assert_eq!(app.balance(&token).await, 0);
}

#[tokio::test]
async fn a_charge_beyond_the_maximum_balance_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;
    for _ in 0..10 {
        app.charge(&token, 1_000_000).await;
    }

    let response = app.post("/points/charge", Some(&token), &json!({ "amount": 1 })).await;

    assert_problem(response, 409, "points.limit_exceeded").await;
    assert_eq!(app.balance(&token).await, 10_000_000);
    assert_eq!(app.history(&token).await.len(), 10);
}
