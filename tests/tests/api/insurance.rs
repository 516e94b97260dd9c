//! Time-based insurance: enrolment, driving sessions, statements, staff expiry, the insurer's
//! signed callback, and the withdrawal → expiry event flow.
//!
//! Premium is billed per whole minute, and tests cannot move the server's clock: the two
//! flows that must show a bill shrinking wait just over a minute of real time (they run in
//! parallel with everything else).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

use core_domain::member::Role;

use crate::helpers::{
    INSURER_SECRET, TestApp, assert_problem, error_fields, id, insurer_signature_at, insurer_signed, items, json_body,
    overlap_minutes, rfc3339, spawn_app, time_of,
};

fn hour() -> time::Duration {
    time::Duration::hours(1)
}

/// `t` without its fraction of a second, so it survives storage at any precision.
fn whole_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap()
}

fn id_of(value: &Value) -> &str {
    value["id"].as_str().expect("an id")
}

async fn member_id_of(app: &TestApp, token: &str) -> String {
    json_body(app.get("/members/me", Some(token)).await, 200).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sleeps until `t + after` (wall clock).
async fn sleep_until(t: OffsetDateTime, after: time::Duration) {
    let remaining = (t + after) - OffsetDateTime::now_utc();
    if remaining.is_positive() {
        tokio::time::sleep(remaining.unsigned_abs()).await;
    }
}

#[tokio::test]
async fn enrolling_returns_an_active_policy_covering_from_now() {
    let app = spawn_app().await;
    let (member, token) = app.rider().await;
    let plan_id = app.plan(1200).await;
    let before = OffsetDateTime::now_utc();

    let response = app
        .post("/insurance/policies", Some(&token), &json!({ "plan_id": plan_id }))
        .await;

    let policy = json_body(response, 201).await;
    let after = OffsetDateTime::now_utc();
    assert_eq!(policy["member_id"], member["id"]);
    assert_eq!(policy["plan_id"], plan_id.as_str());
    assert_eq!(policy["hourly_premium"], 1200, "the plan's premium");
    let number = policy["policy_number"].as_str().unwrap();
    assert_eq!(
        number,
        format!("HR-{}", policy["id"].as_str().unwrap().replace('-', "")).to_uppercase(),
        "the server's number"
    );
    assert_eq!(policy["status"], "active");
    assert!(
        policy["expired_at"].is_null() && policy["expiry_reason"].is_null(),
        "{policy}"
    );
    assert_eq!(policy["version"], 1);
    let coverage_start = time_of(&policy["coverage_start"]);
    assert!(before <= coverage_start && coverage_start <= after);

    let mine = json_body(app.get("/insurance/policies", Some(&token)).await, 200).await;
    let items = mine["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], policy["id"]);
    assert_eq!(items[0]["status"], "active");
}

#[tokio::test]
async fn a_rider_holds_at_most_one_active_policy() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;
    app.enrol(&token, 1000).await;

    let second = app
        .post(
            "/insurance/policies",
            Some(&token),
            &json!({ "plan_id": app.plan(1000).await }),
        )
        .await;

    assert_problem(second, 409, "insurance.already_active").await;
    let mine = json_body(app.get("/insurance/policies", Some(&token)).await, 200).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_rider_never_chooses_the_premium_and_numbers_are_the_insurers_or_the_servers() {
    let app = spawn_app().await;
    let (_, first) = app.rider().await;
    let (_, second) = app.rider().await;
    let plan_id = app.plan(1000).await;

    // A client that still sends its own premium is told, not silently re-priced.
    for body in [
        json!({ "plan_id": plan_id, "hourly_premium": 1 }),
        json!({ "policy_number": "MINE-1", "hourly_premium": 1 }),
    ] {
        let response = app.post("/insurance/policies", Some(&first), &body).await;
        assert_problem(response, 422, "validation.failed").await;
    }
    let given = app
        .post(
            "/insurance/policies",
            Some(&first),
            &json!({ "plan_id": plan_id, "policy_number": "HX-0001" }),
        )
        .await;
    let given = json_body(given, 201).await;
    assert_eq!(
        (given["policy_number"].as_str(), given["hourly_premium"].as_i64()),
        (Some("HX-0001"), Some(1000))
    );
    let assigned = app
        .post("/insurance/policies", Some(&second), &json!({ "plan_id": plan_id }))
        .await;
    let assigned = json_body(assigned, 201).await;
    assert!(
        assigned["policy_number"].as_str().unwrap().starts_with("HR-"),
        "{assigned}"
    );
}

#[tokio::test]
async fn a_policy_number_belongs_to_one_policy() {
    let app = spawn_app().await;
    let (_, first) = app.rider().await;
    let (_, second) = app.rider().await;
    let policy = app.enrol(&first, 1000).await;

    let response = app
        .post(
            "/insurance/policies",
            Some(&second),
            &json!({ "plan_id": app.plan(1000).await, "policy_number": policy["policy_number"] }),
        )
        .await;

    assert_problem(response, 409, "insurance.policy_number_taken").await;
}

#[tokio::test]
async fn enrolment_with_invalid_values_names_the_fields() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;

    let response = app
        .post(
            "/insurance/policies",
            Some(&token),
            &json!({ "plan_id": app.plan(1000).await, "policy_number": "no spaces!" }),
        )
        .await;

    let problem = assert_problem(response, 422, "validation.failed").await;
    assert_eq!(error_fields(&problem), ["policy_number"]);
}

#[tokio::test]
async fn plans_with_invalid_values_name_the_fields() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;

    let response = app
        .post(
            "/admin/insurance/plans",
            Some(&admin),
            &json!({ "name": " ", "hourly_premium": 0 }),
        )
        .await;
    let problem = assert_problem(response, 422, "validation.failed").await;
    assert_eq!(error_fields(&problem), ["hourly_premium", "name"]);
    let too_dear = app
        .post(
            "/admin/insurance/plans",
            Some(&admin),
            &json!({ "name": "Gold", "hourly_premium": 1_000_001 }),
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(too_dear, 422, "validation.failed").await),
        ["hourly_premium"]
    );
    let plan = json_body(
        app.post(
            "/admin/insurance/plans",
            Some(&admin),
            &json!({ "name": "Day", "hourly_premium": 900 }),
        )
        .await,
        201,
    )
    .await;
    let path = format!("/admin/insurance/plans/{}", id(&plan));
    let nothing = app
        .send(app.request(Method::PATCH, &path, Some(&admin)).json(&json!({})))
        .await;
    assert_problem(nothing, 422, "validation.failed").await;
    let bad_status = app
        .send(
            app.request(Method::PATCH, &path, Some(&admin))
                .json(&json!({ "status": "paused" })),
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(bad_status, 422, "validation.failed").await),
        ["status"]
    );
    let unknown = format!("/admin/insurance/plans/{}", Uuid::now_v7());
    let missing = app
        .send(
            app.request(Method::PATCH, &unknown, Some(&admin))
                .json(&json!({ "hourly_premium": 1 })),
        )
        .await;
    assert_problem(missing, 404, "insurance.plan_not_found").await;
    let enrol_unknown = app
        .post(
            "/insurance/policies",
            Some(&rider),
            &json!({ "plan_id": Uuid::now_v7() }),
        )
        .await;
    assert_problem(enrol_unknown, 404, "insurance.plan_not_found").await;
    let not_an_id = app
        .post("/insurance/policies", Some(&rider), &json!({ "plan_id": "basic" }))
        .await;
    assert_problem(not_an_id, 422, "validation.failed").await;
}

#[tokio::test]
async fn staff_manage_plans_and_a_new_premium_applies_to_new_enrolments_only() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let cx = app.staff(Role::Cx).await;
    let (_, early) = app.rider().await;
    let (_, late) = app.rider().await;
    let (_, latest) = app.rider().await;

    let plan = json_body(
        app.post(
            "/admin/insurance/plans",
            Some(&admin),
            &json!({ "name": "Night", "hourly_premium": 6000 }),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        (plan["status"].as_str(), plan["hourly_premium"].as_i64()),
        (Some("active"), Some(6000))
    );
    let offered = json_body(app.get("/insurance/plans", None).await, 200).await;
    assert_eq!(items(&offered).iter().filter(|p| p["id"] == plan["id"]).count(), 1);

    let enrol = |token: String| {
        let body = json!({ "plan_id": plan["id"] });
        let app = &app;
        async move { app.post("/insurance/policies", Some(&token), &body).await }
    };
    let first = json_body(enrol(early.clone()).await, 201).await;
    assert_eq!(first["hourly_premium"], 6000);

    let path = format!("/admin/insurance/plans/{}", id(&plan));
    let repriced = app
        .send(
            app.request(Method::PATCH, &path, Some(&admin))
                .json(&json!({ "hourly_premium": 7200 })),
        )
        .await;
    let repriced = json_body(repriced, 200).await;
    assert_eq!(
        (repriced["hourly_premium"].as_i64(), repriced["name"].as_str()),
        (Some(7200), Some("Night"))
    );
    let second = json_body(enrol(late.clone()).await, 201).await;
    assert_eq!(second["hourly_premium"], 7200);
    let kept = json_body(app.get("/insurance/policies", Some(&early)).await, 200).await;
    assert_eq!(
        items(&kept)[0]["hourly_premium"],
        6000,
        "a policy keeps the premium it was written at"
    );

    let retired = app
        .send(
            app.request(Method::PATCH, &path, Some(&admin))
                .json(&json!({ "status": "retired" })),
        )
        .await;
    assert_eq!(json_body(retired, 200).await["status"], "retired");
    assert_problem(enrol(latest.clone()).await, 409, "insurance.plan_retired").await;
    let offered = json_body(app.get("/insurance/plans", None).await, 200).await;
    assert!(items(&offered).iter().all(|p| p["id"] != plan["id"]));
    for staff in [&cx, &admin] {
        let all = json_body(app.get("/admin/insurance/plans", Some(staff)).await, 200).await;
        let listed: Vec<_> = items(&all).iter().filter(|p| p["id"] == plan["id"]).collect();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["status"], "retired");
    }
    // CX read plans but do not change them.
    let by_cx = app
        .send(
            app.request(Method::PATCH, &path, Some(&cx))
                .json(&json!({ "status": "active" })),
        )
        .await;
    assert_problem(by_cx, 403, "auth.forbidden").await;
}

#[tokio::test]
async fn a_withdrawn_member_cannot_enrol_with_a_still_valid_access_token() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;
    let plan_id = app.plan(1000).await;
    assert_eq!(app.delete("/members/me", Some(&token)).await.status().as_u16(), 204);

    let response = app
        .post("/insurance/policies", Some(&token), &json!({ "plan_id": plan_id }))
        .await;

    assert_problem(response, 409, "member.inactive").await;
}

#[tokio::test]
async fn a_withdrawn_member_cannot_charge_order_or_issue_coupons_with_a_still_valid_access_token() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, token) = app.rider().await;
    assert_eq!(
        app.post("/points/charge", Some(&token), &json!({ "amount": 1000 }))
            .await
            .status()
            .as_u16(),
        200
    );
    let product = json_body(
        app.post(
            "/admin/products",
            Some(&admin),
            &json!({ "name": "Gloves", "price": 100, "stock": 5 }),
        )
        .await,
        201,
    )
    .await;
    let campaign = json_body(
        app.post(
            "/admin/coupons",
            Some(&admin),
            &json!({ "name": "Late", "discount": { "kind": "fixed", "amount": 10 }, "total_quantity": 5 }),
        )
        .await,
        201,
    )
    .await;
    let order = json_body(
        app.post(
            "/orders",
            Some(&token),
            &json!({ "items": [{ "product_id": product["id"], "quantity": 1 }] }),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(app.delete("/members/me", Some(&token)).await.status().as_u16(), 204);

    let charge = app
        .post("/points/charge", Some(&token), &json!({ "amount": 1000 }))
        .await;
    assert_problem(charge, 409, "member.inactive").await;
    let place = app
        .post(
            "/orders",
            Some(&token),
            &json!({ "items": [{ "product_id": product["id"], "quantity": 1 }] }),
        )
        .await;
    assert_problem(place, 409, "member.inactive").await;
    let issue = app
        .post_empty(
            &format!("/coupons/{}/issue", campaign["id"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_problem(issue, 409, "member.inactive").await;
    let pay = app
        .request(
            Method::POST,
            &format!("/orders/{}/payment", order["id"].as_str().unwrap()),
            Some(&token),
        )
        .header("Idempotency-Key", "late-payment");
    assert_problem(app.send(pay).await, 409, "member.inactive").await;
    let session = app.post_empty("/driving/sessions", Some(&token)).await;
    assert_problem(session, 409, "member.inactive").await;
}

#[tokio::test]
async fn a_driving_session_needs_an_active_policy_and_starts_and_ends_once() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;
    let (_, stranger) = app.rider().await;

    let without_licence = app.post_empty("/driving/sessions", Some(&token)).await;
    assert_problem(without_licence, 409, "driving.licence_required").await;
    app.register_licence(&token).await;

    let without_policy = app.post_empty("/driving/sessions", Some(&token)).await;
    assert_problem(without_policy, 409, "driving.no_active_policy").await;

    let policy = app.enrol(&token, 6000).await;
    let started = json_body(app.post_empty("/driving/sessions", Some(&token)).await, 201).await;
    assert_eq!(started["policy_id"], policy["id"]);
    assert!(started["ended_at"].is_null());
    assert_eq!(
        (started["insured_minutes"].as_i64(), started["premium"].as_i64()),
        (Some(0), Some(0))
    );
    assert_problem(
        app.post_empty("/driving/sessions", Some(&token)).await,
        409,
        "driving.session_open",
    )
    .await;

    let end_path = format!("/driving/sessions/{}/end", id_of(&started));
    assert_problem(
        app.post_empty(&end_path, Some(&stranger)).await,
        404,
        "driving.session_not_found",
    )
    .await;
    let ended = json_body(app.post_empty(&end_path, Some(&token)).await, 200).await;
    assert_eq!(ended["id"], started["id"]);
    let (start, end) = (time_of(&ended["started_at"]), time_of(&ended["ended_at"]));
    assert!(start <= end);
    let expected = overlap_minutes(start, end, time_of(&policy["coverage_start"]), None);
    assert_eq!(ended["insured_minutes"], expected);
    assert_eq!(ended["premium"], 6000 * expected / 60);

    assert_problem(
        app.post_empty(&end_path, Some(&token)).await,
        409,
        "driving.session_ended",
    )
    .await;
    let unknown = format!("/driving/sessions/{}/end", uuid::Uuid::now_v7());
    assert_problem(
        app.post_empty(&unknown, Some(&token)).await,
        404,
        "driving.session_not_found",
    )
    .await;
    // Ended: a new session may start.
    json_body(app.post_empty("/driving/sessions", Some(&token)).await, 201).await;
}

#[tokio::test]
async fn the_statement_bills_each_session_for_its_owner_and_staff_only() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;
    let (_, stranger) = app.rider().await;
    let cx = app.staff(Role::Cx).await;
    let admin = app.staff(Role::Admin).await;
    app.register_licence(&token).await;
    let policy = app.enrol(&token, 6000).await;
    let policy_id = id_of(&policy);
    let first = json_body(app.post_empty("/driving/sessions", Some(&token)).await, 201).await;
    app.post_empty(&format!("/driving/sessions/{}/end", id_of(&first)), Some(&token))
        .await;
    let open = json_body(app.post_empty("/driving/sessions", Some(&token)).await, 201).await;
    let (from, to) = (
        whole_second(OffsetDateTime::now_utc()) - hour(),
        whole_second(OffsetDateTime::now_utc()) + hour(),
    );

    for reader in [&token, &cx, &admin] {
        let statement = json_body(app.statement(reader, policy_id, from, to).await, 200).await;
        assert_eq!(statement["policy_id"], policy["id"]);
        assert_eq!((time_of(&statement["from"]), time_of(&statement["to"])), (from, to));
        let sessions = statement["sessions"].as_array().unwrap();
        let mut ids: Vec<&Value> = sessions.iter().map(|s| &s["id"]).collect();
        ids.sort_by_key(|v| v.as_str().unwrap().to_owned());
        assert_eq!(ids, [&first["id"], &open["id"]]);
        for line in sessions {
            assert!(
                line["started_at"].is_string() && line.get("ended_at").is_some(),
                "{line}"
            );
            assert_eq!(line["insured_minutes"], 0, "seconds-old sessions have no whole minute");
            assert_eq!(line["premium"], 0);
        }
        assert_eq!(
            (statement["insured_minutes"].as_i64(), statement["premium"].as_i64()),
            (Some(0), Some(0))
        );
    }

    let before_coverage = json_body(app.statement(&token, policy_id, from - hour(), from).await, 200).await;
    assert_eq!(before_coverage["sessions"], json!([]));

    let someone_elses = app.statement(&stranger, policy_id, from, to).await;
    assert_problem(someone_elses, 404, "insurance.policy_not_found").await;
    let unknown = app.statement(&cx, &uuid::Uuid::now_v7().to_string(), from, to).await;
    assert_problem(unknown, 404, "insurance.policy_not_found").await;
    let reversed = assert_problem(
        app.statement(&token, policy_id, to, from).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(error_fields(&reversed), ["to"]);
    let path = format!("/insurance/policies/{policy_id}/statement");
    let garbled = app
        .get_query(
            &path,
            Some(&token),
            &[("from", "yesterday"), ("to", "2030-01-01T00:00:00Z")],
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(garbled, 422, "validation.failed").await),
        ["from"]
    );
    let missing = app
        .get_query(&path, Some(&token), &[("from", "2030-01-01T00:00:00Z")])
        .await;
    assert_problem(missing, 422, "validation.failed").await;
}

#[tokio::test]
async fn staff_expire_a_policy_within_its_coverage_and_only_earlier_moves_it() {
    let app = spawn_app().await;
    let cx = app.staff(Role::Cx).await;
    let admin = app.staff(Role::Admin).await;
    let cx_id = member_id_of(&app, &cx).await;
    let (member, token) = app.rider().await;
    let member_id = member["id"].as_str().unwrap();
    app.register_licence(&token).await;
    let policy = app.enrol(&token, 6000).await;
    let expire_path = format!("/admin/insurance/policies/{}/expire", id_of(&policy));
    let coverage_start = time_of(&app.policy_as_staff(&cx, member_id, id_of(&policy)).await["coverage_start"]);

    let future = app
        .post(
            &expire_path,
            Some(&cx),
            &json!({ "effective_at": rfc3339(OffsetDateTime::now_utc() + hour()) }),
        )
        .await;
    assert_problem(future, 422, "insurance.invalid_effective_at").await;
    let before_start = app
        .post(
            &expire_path,
            Some(&cx),
            &json!({ "effective_at": rfc3339(coverage_start - hour()) }),
        )
        .await;
    assert_problem(before_start, 422, "insurance.invalid_effective_at").await;
    let bad_reason = app
        .post(
            &expire_path,
            Some(&cx),
            &json!({ "effective_at": rfc3339(coverage_start), "reason": "boredom" }),
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(bad_reason, 422, "validation.failed").await),
        ["reason"]
    );
    let bad_time = app
        .post(&expire_path, Some(&cx), &json!({ "effective_at": "soon" }))
        .await;
    assert_eq!(
        error_fields(&assert_problem(bad_time, 422, "validation.failed").await),
        ["effective_at"]
    );
    let unknown = format!("/admin/insurance/policies/{}/expire", uuid::Uuid::now_v7());
    let unknown = app
        .post(
            &unknown,
            Some(&cx),
            &json!({ "effective_at": rfc3339(OffsetDateTime::now_utc()) }),
        )
        .await;
    assert_problem(unknown, 404, "insurance.policy_not_found").await;

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let at = whole_second(OffsetDateTime::now_utc());
    assert!(at > whole_second(coverage_start) + time::Duration::seconds(1));
    let expired = json_body(
        app.post(&expire_path, Some(&cx), &json!({ "effective_at": rfc3339(at) }))
            .await,
        200,
    )
    .await;
    assert_eq!(expired["id"], policy["id"]);
    assert_eq!(expired["status"], "expired");
    assert_eq!(time_of(&expired["expired_at"]), at);
    assert_eq!(expired["expiry_reason"], "admin_request");
    assert_eq!(expired["expired_by"], format!("staff:{cx_id}"));
    assert_eq!(expired["version"], 2);

    // Later: nothing changes.
    let later = json_body(
        app.post(
            &expire_path,
            Some(&admin),
            &json!({ "effective_at": rfc3339(OffsetDateTime::now_utc()) }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!((time_of(&later["expired_at"]), &later["version"]), (at, &json!(2)));

    // Staff see it among the member's policies.
    let seen = app.policy_as_staff(&admin, member_id, id_of(&policy)).await;
    assert_eq!(seen["status"], "expired");
    assert_eq!(time_of(&seen["expired_at"]), at);
    assert_eq!(seen["expiry_reason"], "admin_request");
    assert_eq!(seen["member_id"], member["id"]);
    assert_eq!(seen["policy_number"], policy["policy_number"]);
    assert_eq!(seen["hourly_premium"], 6000);

    // Earlier, with another reason: it moves.
    let earlier_at = whole_second(coverage_start) + time::Duration::seconds(1);
    let earlier = app
        .post(
            &expire_path,
            Some(&admin),
            &json!({ "effective_at": rfc3339(earlier_at), "reason": "insurer_cancellation" }),
        )
        .await;
    let earlier = json_body(earlier, 200).await;
    assert_eq!(time_of(&earlier["expired_at"]), earlier_at);
    assert_eq!(earlier["expiry_reason"], "insurer_cancellation");
    assert_eq!(earlier["version"], 3);

    // Expired: no driving under it, but a new policy may be taken out.
    assert_problem(
        app.post_empty("/driving/sessions", Some(&token)).await,
        409,
        "driving.no_active_policy",
    )
    .await;
    app.enrol(&token, 6000).await;
}

#[tokio::test]
async fn the_insurer_callback_is_refused_without_a_valid_signature() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;
    let policy = app.enrol(&token, 6000).await;
    let body = json!({ "event_id": "ev-1", "policy_number": policy["policy_number"], "cancelled_at": rfc3339(OffsetDateTime::now_utc()) });
    let raw = serde_json::to_vec(&body).unwrap();
    let send = |timestamp: Option<i64>, signature: Option<String>| {
        let mut request = app
            .request(Method::POST, "/insurance/insurer/cancellations", None)
            .header("content-type", "application/json")
            .body(raw.clone());
        if let Some(timestamp) = timestamp {
            request = request.header("x-insurer-timestamp", timestamp.to_string());
        }
        if let Some(signature) = signature {
            request = request.header("x-insurer-signature", signature);
        }
        app.send(request)
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let body_alone = {
        let mut mac = Hmac::<Sha256>::new_from_slice(INSURER_SECRET.as_bytes()).unwrap();
        mac.update(&raw);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };

    let refused = [
        send(Some(now), None).await,
        send(Some(now), Some(format!("sha256={}", "ab".repeat(32)))).await,
        send(Some(now), Some(insurer_signature_at(now, b"{}"))).await,
        send(
            Some(now),
            Some(insurer_signature_at(now, &raw).trim_start_matches("sha256=").to_owned()),
        )
        .await,
        send(Some(now), Some("sha256=zz".to_owned())).await,
        // The right signature, but no timestamp, or one replayed from 6 minutes ago (or
        // ahead), or the body alone signed (the scheme without a timestamp).
        send(None, Some(insurer_signature_at(now, &raw))).await,
        send(Some(now - 360), Some(insurer_signature_at(now - 360, &raw))).await,
        send(Some(now + 360), Some(insurer_signature_at(now + 360, &raw))).await,
        send(Some(now), Some(body_alone)).await,
    ];
    for response in refused {
        assert_problem(response, 401, "insurer.invalid_signature").await;
    }
    let mine = json_body(app.get("/insurance/policies", Some(&token)).await, 200).await;
    assert_eq!(mine["items"][0]["status"], "active");
}

#[tokio::test]
async fn an_insurer_cancellation_expires_the_policy_once_per_event_id() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;
    let policy = app.enrol(&token, 6000).await;
    let number = policy["policy_number"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cancelled_at = whole_second(OffsetDateTime::now_utc());

    let event = json!({ "event_id": "ins-42", "policy_number": number, "cancelled_at": rfc3339(cancelled_at) });
    let first = json_body(app.signed_cancellation(&event).await, 200).await;
    assert_eq!(first["id"], policy["id"]);
    assert_eq!(first["status"], "expired");
    assert_eq!(time_of(&first["expired_at"]), cancelled_at);
    assert_eq!(first["expiry_reason"], "insurer_cancellation");
    assert_eq!(first["expired_by"], "insurer");
    assert_eq!(first["version"], 2);

    // The same event again, even claiming an earlier time, is a no-op.
    let replay = json!({ "event_id": "ins-42", "policy_number": number, "cancelled_at": rfc3339(time_of(&policy["coverage_start"])) });
    let second = json_body(app.signed_cancellation(&replay).await, 200).await;
    assert_eq!(second["version"], 2);
    assert_eq!(time_of(&second["expired_at"]), cancelled_at);
    let mine = json_body(app.get("/insurance/policies", Some(&token)).await, 200).await;
    assert_eq!(mine["items"][0]["version"], 2);
    assert_eq!(time_of(&mine["items"][0]["expired_at"]), cancelled_at);
}

#[tokio::test]
async fn an_insurer_cancellation_dated_before_coverage_expires_the_policy_at_its_start() {
    let app = spawn_app().await;
    let cx = app.staff(Role::Cx).await;
    let (member, token) = app.rider().await;
    let policy = app.enrol(&token, 6000).await;
    let stored = app
        .policy_as_staff(&cx, member["id"].as_str().unwrap(), id_of(&policy))
        .await;
    let coverage_start = time_of(&stored["coverage_start"]);

    let event = json!({ "event_id": "ins-early", "policy_number": policy["policy_number"], "cancelled_at": rfc3339(coverage_start - hour()) });
    let expired = json_body(app.signed_cancellation(&event).await, 200).await;

    assert_eq!(expired["status"], "expired");
    assert_eq!(time_of(&expired["expired_at"]), coverage_start);
}

#[tokio::test]
async fn the_insurer_callback_rejects_unknown_policies_future_times_and_bad_bodies() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;
    let policy = app.enrol(&token, 6000).await;
    let now = rfc3339(OffsetDateTime::now_utc());

    let unknown = json!({ "event_id": "e-1", "policy_number": "NO-SUCH-POLICY", "cancelled_at": now });
    assert_problem(
        app.signed_cancellation(&unknown).await,
        404,
        "insurance.policy_not_found",
    )
    .await;
    let future = json!({ "event_id": "e-2", "policy_number": policy["policy_number"], "cancelled_at": rfc3339(OffsetDateTime::now_utc() + hour()) });
    assert_problem(
        app.signed_cancellation(&future).await,
        422,
        "insurance.invalid_effective_at",
    )
    .await;
    let bad_time =
        json!({ "event_id": "e-3", "policy_number": policy["policy_number"], "cancelled_at": "last tuesday" });
    let problem = assert_problem(app.signed_cancellation(&bad_time).await, 422, "validation.failed").await;
    assert_eq!(error_fields(&problem), ["cancelled_at"]);
    let empty_event = json!({ "event_id": " ", "policy_number": policy["policy_number"], "cancelled_at": now });
    let problem = assert_problem(app.signed_cancellation(&empty_event).await, 422, "validation.failed").await;
    assert_eq!(error_fields(&problem), ["event_id"]);
    let wrong_type = json!({ "event_id": 7, "policy_number": policy["policy_number"], "cancelled_at": now });
    assert_problem(app.signed_cancellation(&wrong_type).await, 422, "validation.failed").await;

    let malformed = b"{\"event_id\": ".to_vec();
    let response = app
        .send(
            insurer_signed(
                app.request(Method::POST, "/insurance/insurer/cancellations", None),
                &malformed,
            )
            .body(malformed),
        )
        .await;
    assert_problem(response, 400, "request.malformed_json").await;

    let mine = json_body(app.get("/insurance/policies", Some(&token)).await, 200).await;
    assert_eq!(mine["items"][0]["status"], "active");
}

#[tokio::test]
async fn withdrawal_expires_the_policy_at_the_withdrawal_and_bills_no_minute_after_it() {
    let app = spawn_app().await;
    let cx = app.staff(Role::Cx).await;
    let (member, token) = app.rider().await;
    let member_id = member["id"].as_str().unwrap();
    app.register_licence(&token).await;
    let policy = app.enrol(&token, 6000).await;
    let policy_id = id_of(&policy);
    let session = json_body(app.post_empty("/driving/sessions", Some(&token)).await, 201).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(app.delete("/members/me", Some(&token)).await.status().as_u16(), 204);

    let expired_within_a_second = crate::helpers::wait_until(Duration::from_secs(1), || async {
        app.policy_as_staff(&cx, member_id, policy_id).await["status"] == "expired"
    })
    .await;
    assert!(
        expired_within_a_second,
        "the policy did not expire within a second of the withdrawal"
    );
    let expired = app.policy_as_staff(&cx, member_id, policy_id).await;
    assert_eq!(expired["expiry_reason"], "member_withdrawn");
    assert_eq!(expired["expired_by"], "system:insurance-expiry");
    let email = member["email"].as_str().unwrap();
    let found = json_body(
        app.get_query("/admin/members", Some(&cx), &[("email", email)]).await,
        200,
    )
    .await;
    let withdrawn_at = time_of(&found["items"][0]["withdrawn_at"]);
    let expired_at = time_of(&expired["expired_at"]);
    assert_eq!(expired_at, withdrawn_at);

    // The session stays open for over a minute: billed up to the withdrawal only.
    let started_at = time_of(&session["started_at"]);
    sleep_until(started_at, time::Duration::seconds(61)).await;
    let coverage_start = time_of(&expired["coverage_start"]);
    let (from, to) = (coverage_start - hour(), OffsetDateTime::now_utc() + hour());
    let statement = json_body(app.statement(&cx, policy_id, from, to).await, 200).await;
    let line = &statement["sessions"][0];
    assert_eq!(line["id"], session["id"]);
    assert!(line["ended_at"].is_null());
    assert!(OffsetDateTime::now_utc() - time_of(&line["started_at"]) >= time::Duration::minutes(1));
    let expected = overlap_minutes(
        time_of(&line["started_at"]),
        OffsetDateTime::now_utc(),
        coverage_start,
        Some(expired_at),
    );
    assert_eq!(expected, 0);
    assert_eq!(
        (line["insured_minutes"].as_i64(), line["premium"].as_i64()),
        (Some(expected), Some(0))
    );
    assert_eq!(
        (statement["insured_minutes"].as_i64(), statement["premium"].as_i64()),
        (Some(0), Some(0))
    );

    let ended = json_body(
        app.post_empty(&format!("/driving/sessions/{}/end", id_of(&session)), Some(&token))
            .await,
        200,
    )
    .await;
    assert!(time_of(&ended["ended_at"]) - time_of(&ended["started_at"]) >= time::Duration::minutes(1));
    assert_eq!(
        (ended["insured_minutes"].as_i64(), ended["premium"].as_i64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn an_insurer_cancellation_before_a_staff_expiry_moves_it_earlier_and_shrinks_the_statement() {
    let app = spawn_app().await;
    let cx = app.staff(Role::Cx).await;
    let (member, token) = app.rider().await;
    let member_id = member["id"].as_str().unwrap();
    app.register_licence(&token).await;
    let policy = app.enrol(&token, 7000).await;
    let policy_id = id_of(&policy);
    let session = json_body(app.post_empty("/driving/sessions", Some(&token)).await, 201).await;
    let stored = app.policy_as_staff(&cx, member_id, policy_id).await;
    let coverage_start = time_of(&stored["coverage_start"]);
    let started_at = time_of(&session["started_at"]);

    // Staff expire it at T2, just over a minute into the session.
    sleep_until(started_at, time::Duration::seconds(62)).await;
    let t2 = whole_second(OffsetDateTime::now_utc());
    let expire_path = format!("/admin/insurance/policies/{policy_id}/expire");
    let by_staff = json_body(
        app.post(&expire_path, Some(&cx), &json!({ "effective_at": rfc3339(t2) }))
            .await,
        200,
    )
    .await;
    assert_eq!(time_of(&by_staff["expired_at"]), t2);
    let (from, to) = (coverage_start - hour(), t2 + hour());
    let before = json_body(app.statement(&token, policy_id, from, to).await, 200).await;
    let minutes_to_t2 = overlap_minutes(started_at, OffsetDateTime::now_utc(), coverage_start, Some(t2));
    assert_eq!(minutes_to_t2, 1);
    assert_eq!(before["sessions"][0]["insured_minutes"], 1);
    assert_eq!(before["insured_minutes"], 1);
    assert_eq!(before["premium"], 116, "7,000 an hour for one minute, rounded down");

    // The insurer reports it had cancelled at T1, before T2.
    let t1 = whole_second(coverage_start) + time::Duration::seconds(30);
    let event = json!({ "event_id": format!("ins-{policy_id}"), "policy_number": policy["policy_number"], "cancelled_at": rfc3339(t1) });
    let moved = json_body(app.signed_cancellation(&event).await, 200).await;
    assert_eq!(time_of(&moved["expired_at"]), t1);
    assert_eq!(moved["expiry_reason"], "insurer_cancellation");
    assert_eq!(moved["expired_by"], "insurer");
    assert_eq!(moved["version"], by_staff["version"].as_i64().unwrap() + 1);

    let after = json_body(app.statement(&token, policy_id, from, to).await, 200).await;
    let minutes_to_t1 = overlap_minutes(started_at, OffsetDateTime::now_utc(), coverage_start, Some(t1));
    assert_eq!(minutes_to_t1, 0);
    assert_eq!(after["sessions"][0]["insured_minutes"], minutes_to_t1);
    assert_eq!(
        (after["insured_minutes"].as_i64(), after["premium"].as_i64()),
        (Some(0), Some(0))
    );

    // A later report changes nothing; ending the session bills what the statement says.
    let later = json!({ "event_id": format!("ins-late-{policy_id}"), "policy_number": policy["policy_number"], "cancelled_at": rfc3339(t2) });
    let unchanged = json_body(app.signed_cancellation(&later).await, 200).await;
    assert_eq!(
        (time_of(&unchanged["expired_at"]), &unchanged["version"]),
        (t1, &moved["version"])
    );
    let ended = json_body(
        app.post_empty(&format!("/driving/sessions/{}/end", id_of(&session)), Some(&token))
            .await,
        200,
    )
    .await;
    assert_eq!(
        (ended["insured_minutes"].as_i64(), ended["premium"].as_i64()),
        (Some(0), Some(0))
    );
}
