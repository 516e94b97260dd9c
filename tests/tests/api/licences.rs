//! Driving licences: registration verified by the provider, the driving rule, staff's view,
//! and the re-verification batch under its lease, against a real HTTP provider.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use application::jobs::{JobRunner, JobSettings, RunOutcome};
use application::licences::ReverifyLicences;
use core_domain::licence::DuePolicy;
use core_domain::member::Role;
use ports::Consistency;
use tests::licence_provider::{Answer, FakeProvider};

use crate::helpers::*;

/// A server asking `provider`.
async fn app_with(provider: &FakeProvider) -> TestApp {
    app_with_timeout(provider, Duration::from_millis(500)).await
}

/// A server asking `provider`, waiting for each answer up to `timeout`.
async fn app_with_timeout(provider: &FakeProvider, timeout: Duration) -> TestApp {
    let url = provider.url.clone();
    spawn_app_with(move |c| {
        c.licence_provider.url = url;
        c.licence_provider.timeout = timeout;
        c.licence_provider.max_attempts = 2;
        c.licence_provider.backoff = Duration::from_millis(10);
        // Per test: a breaker opened by one test's failures would refuse another's calls.
        c.licence_provider.breaker_threshold = 0;
    })
    .await
}

fn licence(number: &str) -> serde_json::Value {
    json!({ "number": number, "expires_on": "2033-03-31" })
}

#[tokio::test]
async fn a_rider_registers_a_licence_the_provider_verified_and_drives_with_it() {
    let provider = FakeProvider::start().await;
    provider.answer("11-22-333333-44", Answer::Valid("2034-12-31".into()));
    provider.answer("99-99-999999-99", Answer::Rejected("revoked by the issuer".into()));
    provider.answer("55-55-555555-55", Answer::Status(503));
    let app = app_with(&provider).await;
    let (member, token) = app.rider().await;
    let member_id = member["id"].as_str().unwrap();
    let cx = app.staff(Role::Cx).await;

    assert_problem(
        app.get("/members/me/licence", Some(&token)).await,
        404,
        "licence.not_found",
    )
    .await;
    for (body, field) in [
        (json!({ "number": "x", "expires_on": "2033-03-31" }), "number"),
        (
            json!({ "number": "11-22-333333-44", "expires_on": "31/03/2033" }),
            "expires_on",
        ),
    ] {
        let refused = app.put("/members/me/licence", Some(&token), &body).await;
        assert_eq!(
            error_fields(&assert_problem(refused, 422, "validation.failed").await),
            [field]
        );
    }
    let lapsed = json!({ "number": "11-22-333333-44", "expires_on": "2020-01-01" });
    assert_problem(
        app.put("/members/me/licence", Some(&token), &lapsed).await,
        409,
        "licence.expired",
    )
    .await;
    assert_eq!(provider.requests(), 0, "bad input never reaches the provider");

    let rejected = app
        .put("/members/me/licence", Some(&token), &licence("99-99-999999-99"))
        .await;
    assert_problem(rejected, 409, "licence.rejected").await;
    let down = app
        .request(Method::PUT, "/members/me/licence", Some(&token))
        .json(&licence("55-55-555555-55"))
        .send()
        .await
        .unwrap();
    assert_problem(down, 503, "licence.provider_unavailable").await;
    assert_eq!(provider.asked("55-55-555555-55"), 2, "retried once");

    let registered = json_body(
        app.put("/members/me/licence", Some(&token), &licence(" 11-22-333333-44 "))
            .await,
        200,
    )
    .await;
    assert_eq!(
        (&registered["number"], &registered["expires_on"], &registered["status"]),
        (&json!("11-22-333333-44"), &json!("2034-12-31"), &json!("valid")),
        "trimmed, with the provider's expiry"
    );
    assert_eq!(
        json_body(app.get("/members/me/licence", Some(&token)).await, 200).await,
        registered
    );

    let record = json_body(
        app.get(&format!("/admin/members/{member_id}/licence"), Some(&cx)).await,
        200,
    )
    .await;
    assert_eq!(record["licence"], registered);
    let checks = record["checks"].as_array().unwrap();
    let seen: Vec<_> = checks
        .iter()
        .map(|c| (c["number"].as_str(), c["status"].as_str(), c["reason"].as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("11-22-333333-44"), Some("valid"), None),
            (
                Some("99-99-999999-99"),
                Some("suspended"),
                Some("revoked by the issuer")
            ),
        ],
        "newest first, the rejected attempt kept"
    );
    assert!(checks.iter().all(|c| c["actor"] == format!("member:{member_id}")));
    assert_problem(
        app.get(&format!("/admin/members/{member_id}/licence"), Some(&token))
            .await,
        403,
        "auth.forbidden",
    )
    .await;

    app.enrol(&token, 6000).await;
    json_body(app.post_empty("/driving/sessions", Some(&token)).await, 201).await;
}

/// Every licence of `riders` due: verified before now is "not verified for 0 days".
fn all_due() -> DuePolicy {
    DuePolicy {
        expiring_within: time::Duration::ZERO,
        unverified_for: time::Duration::ZERO,
    }
}

fn runner(app: &TestApp, holder: &str, settings: JobSettings) -> JobRunner {
    let ports = &app.runtime.ports;
    JobRunner::new(ports.jobs.clone(), ports.clock.clone(), holder.to_owned(), settings)
}

/// A rider with a licence numbered `number`: their id and token.
async fn licensed(app: &TestApp, number: &str) -> (String, String) {
    let (member, token) = app.rider().await;
    json_body(
        app.put("/members/me/licence", Some(&token), &licence(number)).await,
        200,
    )
    .await;
    (member["id"].as_str().unwrap().to_owned(), token)
}

#[tokio::test]
async fn the_batch_suspends_the_licences_the_provider_rejects_and_leaves_unanswered_ones_for_later() {
    let provider = FakeProvider::start().await;
    let app = app_with(&provider).await;
    let (revoked, revoked_token) = licensed(&app, "10-00-000000-01").await;
    let (renewed, _) = licensed(&app, "10-00-000000-02").await;
    let (failing, _) = licensed(&app, "10-00-000000-03").await;
    let (garbled, _) = licensed(&app, "10-00-000000-04").await;
    let before = |id: &str| {
        let ports = app.runtime.ports.clone();
        let id = id.parse().unwrap();
        async move { ports.licences.licence(id, Consistency::Strong).await.unwrap().unwrap() }
    };
    let (failing_before, garbled_before) = (before(&failing).await, before(&garbled).await);
    provider.answer("10-00-000000-01", Answer::Rejected("revoked".into()));
    provider.answer("10-00-000000-02", Answer::Valid("2040-06-30".into()));
    provider.answer("10-00-000000-03", Answer::Status(500));
    provider.answer("10-00-000000-04", Answer::Garbled);

    let job = ReverifyLicences::new(app.runtime.ports.clone(), all_due());
    let settings = JobSettings {
        chunk_size: 3,
        max_rows_per_second: 0,
        lease: Duration::from_secs(30),
    };
    let outcome = runner(&app, "instance-a", settings).run(&job).await.unwrap();
    assert_eq!(outcome, RunOutcome::Finished { done: 2, failed: 2 });

    let cx = app.staff(Role::Cx).await;
    let record = |id: String| {
        let (app, cx) = (&app, &cx);
        async move { json_body(app.get(&format!("/admin/members/{id}/licence"), Some(cx)).await, 200).await }
    };
    let suspended = record(revoked.clone()).await;
    assert_eq!(
        (&suspended["licence"]["status"], &suspended["licence"]["status_reason"]),
        (&json!("suspended"), &json!("revoked"))
    );
    assert_eq!(suspended["checks"][0]["actor"], "system:licence-reverification");
    assert_eq!(
        json_body(app.get("/members/me/licence", Some(&revoked_token)).await, 200).await["status"],
        "suspended"
    );
    app.enrol(&revoked_token, 6000).await;
    assert_problem(
        app.post_empty("/driving/sessions", Some(&revoked_token)).await,
        409,
        "driving.licence_not_valid",
    )
    .await;
    let events = app
        .runtime
        .ports
        .trail
        .events_of(&[revoked.parse().unwrap()], 10, Consistency::Strong)
        .await
        .unwrap();
    let suspensions: Vec<_> = events
        .iter()
        .filter(|e| e.event_type == "member.licence_suspended")
        .collect();
    assert_eq!(suspensions.len(), 1, "{events:?}");

    let renewed = record(renewed).await;
    assert_eq!(
        (&renewed["licence"]["status"], &renewed["licence"]["expires_on"]),
        (&json!("valid"), &json!("2040-06-30"))
    );
    assert_eq!(renewed["checks"].as_array().unwrap().len(), 2);
    // No verdict: left as they were, with no check recorded, to be asked again next run.
    assert_eq!(before(&failing).await, failing_before);
    assert_eq!(before(&garbled).await, garbled_before);
    assert_eq!(record(failing).await["checks"].as_array().unwrap().len(), 1);
    assert_eq!(
        provider.asked("10-00-000000-03"),
        1 + 2,
        "registration, then two attempts"
    );

    // The next run asks about the two again, and finds the provider answering.
    provider.answer("10-00-000000-03", Answer::Valid("2033-03-31".into()));
    provider.answer("10-00-000000-04", Answer::Valid("2033-03-31".into()));
    let outcome = runner(
        &app,
        "instance-a",
        JobSettings {
            chunk_size: 3,
            max_rows_per_second: 0,
            ..JobSettings::default()
        },
    )
    .run(&job)
    .await
    .unwrap();
    assert_eq!(
        outcome,
        RunOutcome::Finished { done: 3, failed: 0 },
        "the suspended licence is no longer due"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("job_last_finished_timestamp_seconds{batch=\"licence-reverification\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("job_rows_total{batch=\"licence-reverification\",outcome=\"failed\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_run_stopped_mid_way_is_resumed_after_its_last_chunk_by_another_instance() {
    let provider = FakeProvider::start().await;
    // Long enough that instance A's stalled call is still waiting when A stops.
    let app = app_with_timeout(&provider, Duration::from_secs(20)).await;
    let mut numbers = Vec::new();
    for n in 0..7 {
        let number = format!("20-00-000000-{n:02}");
        licensed(&app, &number).await;
        numbers.push(number);
    }
    let job = ReverifyLicences::new(app.runtime.ports.clone(), all_due());
    let settings = JobSettings {
        chunk_size: 2,
        max_rows_per_second: 0,
        lease: Duration::from_secs(2),
    };

    // Instance A works one chunk, then stalls on the provider and stops (its task ends
    // mid-chunk, as when the process dies): its lease stays until it runs out.
    let first = app
        .runtime
        .ports
        .licences
        .due_licences(
            &all_due().cutoffs(time::OffsetDateTime::now_utc()),
            None,
            7,
            Consistency::Strong,
        )
        .await
        .unwrap();
    let stall_from = &first[2].number;
    provider.answer(
        stall_from,
        Answer::Slow(Duration::from_secs(30), Box::new(Answer::Valid("2033-03-31".into()))),
    );
    let a = tokio::spawn({
        let (runner, job) = (runner(&app, "instance-a", settings.clone()), job.clone());
        async move { runner.run(&job).await }
    });
    // A has committed its first chunk and asked about both licences of its second.
    let ports = app.runtime.ports.clone();
    let progressed = || async {
        let states = ports.jobs.job_states().await.unwrap();
        states.iter().any(|s| s.rows_done == 2)
            && provider.asked(&first[2].number) == 2
            && provider.asked(&first[3].number) == 2
    };
    let waited = std::time::Instant::now();
    while !progressed().await {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "instance A never reached its second chunk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.abort();
    assert!(a.await.unwrap_err().is_cancelled());

    let b = runner(&app, "instance-b", settings);
    assert_eq!(
        b.run(&job).await.unwrap(),
        RunOutcome::HeldElsewhere,
        "A's lease still holds"
    );
    provider.answer(stall_from, Answer::Valid("2033-03-31".into()));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // B resumes after A's committed chunk: the run's counts include A's two.
    assert_eq!(b.run(&job).await.unwrap(), RunOutcome::Finished { done: 5, failed: 0 });

    let states = app.runtime.ports.jobs.job_states().await.unwrap();
    let state = states.iter().find(|s| s.name == "licence-reverification").unwrap();
    assert_eq!(
        (state.rows_done, state.rows_failed, state.holder.as_deref()),
        (7, 0, None)
    );
    for (i, number) in numbers.iter().enumerate() {
        let asked = provider.asked(number);
        // Registration, the batch; A's stalled chunk (its 3rd and 4th) asked twice.
        let expected = if first[2..4].iter().any(|l| &l.number == number) {
            3
        } else {
            2
        };
        assert_eq!(asked, expected, "licence {i} ({number})");
    }
    // Every licence re-verified exactly once in what was committed.
    for l in &first {
        let checks = app
            .runtime
            .ports
            .licences
            .licence_checks(l.member_id, 10, Consistency::Strong)
            .await
            .unwrap();
        assert_eq!(checks.len(), 2, "registration and one re-verification");
    }
}
