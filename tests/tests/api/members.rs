//! Members and authentication: sign-up, login, refresh rotation, logout, withdrawal, limits,
//! and staff search.

use serde_json::json;

use core_domain::member::Role;

use crate::helpers::{
    PASSWORD, assert_problem, json_body, spawn_app, spawn_app_with, time_of, tokens_of, unique_email,
};

#[tokio::test]
async fn signing_up_returns_an_active_rider_with_normalised_contact_details() {
    let app = spawn_app().await;
    let email = unique_email("New.Rider");

    let response = app
        .post(
            "/members",
            None,
            &json!({ "email": format!("  {}  ", email.to_uppercase()), "password": PASSWORD, "name": "Kim", "phone": "010-1234 5678" }),
        )
        .await;

    let member = json_body(response, 201).await;
    assert_eq!(member["email"], email.to_lowercase());
    assert_eq!(member["name"], "Kim");
    assert_eq!(member["phone"], "01012345678");
    assert_eq!(member["role"], "rider");
    assert_eq!(member["status"], "active");
    assert!(member["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert!(
        member.get("password").is_none() && member.get("password_hash").is_none(),
        "{member}"
    );
}

#[tokio::test]
async fn signing_up_with_a_taken_email_in_any_case_is_a_conflict() {
    let app = spawn_app().await;
    let email = unique_email("taken");
    json_body(app.sign_up(&email).await, 201).await;

    assert_problem(app.sign_up(&email).await, 409, "member.email_taken").await;
    assert_problem(app.sign_up(&email.to_uppercase()).await, 409, "member.email_taken").await;
}

#[tokio::test]
async fn logging_in_returns_a_bearer_token_pair() {
    let app = spawn_app().await;
    let email = unique_email("login");
    json_body(app.sign_up(&email).await, 201).await;

    let body = json_body(app.try_login(&email.to_uppercase(), PASSWORD).await, 200).await;

    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(body["access_token"].as_str().unwrap().len() > 20);
    assert_eq!(body["refresh_token"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn a_wrong_password_or_an_unknown_email_is_invalid_credentials() {
    let app = spawn_app().await;
    let email = unique_email("creds");
    json_body(app.sign_up(&email).await, 201).await;

    let wrong_password = app.try_login(&email, "not the password at all").await;
    assert_problem(wrong_password, 401, "auth.invalid_credentials").await;
    let unknown = app.try_login(&unique_email("nobody"), PASSWORD).await;
    assert_problem(unknown, 401, "auth.invalid_credentials").await;
}

#[tokio::test]
async fn the_profile_is_the_callers_own_member() {
    let app = spawn_app().await;
    let (member, token) = app.rider().await;

    let me = json_body(app.get("/members/me", Some(&token)).await, 200).await;

    for field in ["id", "email", "name", "phone", "role", "status"] {
        assert_eq!(me[field], member[field], "{field}");
    }
    assert!(me["withdrawn_at"].is_null());
}

#[tokio::test]
async fn refreshing_rotates_and_reusing_a_spent_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    let (_, first) = app.rider_with_tokens().await;

    let rotated = json_body(
        app.post("/auth/refresh", None, &json!({ "refresh_token": first.refresh }))
            .await,
        200,
    )
    .await;
    let second = tokens_of(&rotated);
    assert_eq!(rotated["token_type"], "Bearer");
    assert_ne!(second.refresh, first.refresh);
    json_body(app.get("/members/me", Some(&second.access)).await, 200).await;

    let reuse = app
        .post("/auth/refresh", None, &json!({ "refresh_token": first.refresh }))
        .await;
    assert_problem(reuse, 401, "auth.refresh_token_reused").await;

    // The family is revoked: the token the first rotation handed out is dead too.
    let after_revocation = app
        .post("/auth/refresh", None, &json!({ "refresh_token": second.refresh }))
        .await;
    assert_problem(after_revocation, 401, "auth.invalid_refresh_token").await;
}

#[tokio::test]
async fn an_unknown_refresh_token_is_invalid() {
    let app = spawn_app().await;

    let response = app
        .post("/auth/refresh", None, &json!({ "refresh_token": "0".repeat(64) }))
        .await;

    assert_problem(response, 401, "auth.invalid_refresh_token").await;
}

#[tokio::test]
async fn logging_out_revokes_the_refresh_token_of_that_login() {
    let app = spawn_app().await;
    let (_, tokens) = app.rider_with_tokens().await;

    let response = app.post_empty("/auth/logout", Some(&tokens.access)).await;
    assert_eq!(response.status().as_u16(), 204);

    let refresh = app
        .post("/auth/refresh", None, &json!({ "refresh_token": tokens.refresh }))
        .await;
    assert_problem(refresh, 401, "auth.invalid_refresh_token").await;
}

#[tokio::test]
async fn withdrawing_ends_login_and_refresh_and_cannot_be_repeated() {
    let app = spawn_app().await;
    let (member, tokens) = app.rider_with_tokens().await;
    let email = member["email"].as_str().unwrap();

    let response = app.delete("/members/me", Some(&tokens.access)).await;
    assert_eq!(response.status().as_u16(), 204);

    let me = json_body(app.get("/members/me", Some(&tokens.access)).await, 200).await;
    assert_eq!(me["status"], "withdrawn");
    assert!(me["withdrawn_at"].is_string());
    assert_problem(app.try_login(email, PASSWORD).await, 401, "auth.invalid_credentials").await;
    let refresh = app
        .post("/auth/refresh", None, &json!({ "refresh_token": tokens.refresh }))
        .await;
    assert_problem(refresh, 401, "auth.invalid_refresh_token").await;
    assert_problem(
        app.delete("/members/me", Some(&tokens.access)).await,
        409,
        "member.already_withdrawn",
    )
    .await;
}

#[tokio::test]
async fn login_attempts_over_the_per_email_limit_are_throttled_with_retry_after() {
    let app = spawn_app_with(|c| c.auth.login_per_email_per_hour = 3).await;
    let email = unique_email("throttled");
    json_body(app.sign_up(&email).await, 201).await;

    for _ in 0..3 {
        assert_problem(
            app.try_login(&email, "wrong password!!").await,
            401,
            "auth.invalid_credentials",
        )
        .await;
    }
    // Even the right password is refused once the limit is reached.
    let response = app.try_login(&email, PASSWORD).await;

    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    // One attempt comes back every 3600 s / 3.
    assert!((1..=1200).contains(&retry_after), "Retry-After: {retry_after}");
    assert_problem(response, 429, "rate_limited").await;
    // Another address is not affected.
    let other = unique_email("unthrottled");
    json_body(app.sign_up(&other).await, 201).await;
    app.login(&other).await;
}

#[tokio::test]
async fn api_calls_over_the_per_member_limit_are_throttled_with_retry_after() {
    let app = spawn_app_with(|c| c.auth.api_per_member_per_minute = 3).await;
    let (_, token) = app.rider().await;

    for _ in 0..3 {
        json_body(app.get("/members/me", Some(&token)).await, 200).await;
    }
    let response = app.get("/members/me", Some(&token)).await;

    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
    assert_problem(response, 429, "rate_limited").await;
}

#[tokio::test]
async fn staff_find_members_by_email_prefix_with_their_withdrawal_time() {
    let app = spawn_app().await;
    let cx = app.staff(Role::Cx).await;
    let admin = app.staff(Role::Admin).await;
    let (member, token) = app.rider().await;
    let email = member["email"].as_str().unwrap();
    app.delete("/members/me", Some(&token)).await;

    for staff in [&cx, &admin] {
        let found = json_body(
            app.get_query("/admin/members", Some(staff), &[("email", email)]).await,
            200,
        )
        .await;
        let items = found["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{found}");
        assert_eq!(items[0]["id"], member["id"]);
        assert_eq!(items[0]["status"], "withdrawn");
        time_of(&items[0]["withdrawn_at"]);
    }
    let prefix = &email[..14];
    let by_prefix = json_body(
        app.get_query("/admin/members", Some(&cx), &[("email", prefix)]).await,
        200,
    )
    .await;
    assert!(
        by_prefix["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == member["id"])
    );
    let none = json_body(
        app.get_query("/admin/members", Some(&cx), &[("email", "nobody-here@")])
            .await,
        200,
    )
    .await;
    assert_eq!(none, json!({ "items": [], "next": null }));
    let empty = app.get_query("/admin/members", Some(&cx), &[("email", "  ")]).await;
    assert_problem(empty, 422, "validation.failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sign_up_burst_past_the_hashing_queue_is_answered_503_and_other_traffic_is_served() {
    // One hashing thread with two waiting, and hashes expensive enough (32 MiB, 4 passes)
    // that 40 sign-ups at once cannot all be taken.
    let app = spawn_app_with(|c| {
        c.auth.argon2_memory_kib = 32 * 1024;
        c.auth.argon2_iterations = 4;
        c.auth.hash_threads = 1;
        c.auth.hash_queue = 2;
    })
    .await;
    let (_, rider) = app.rider().await;
    let emails: Vec<String> = (0..40).map(|_| unique_email("burst")).collect();

    // Sent as they are (`app.sign_up` refuses any 5xx answer).
    let burst = futures::future::join_all(emails.iter().map(|email| {
        app.client
            .post(app.api("/members"))
            .json(&json!({ "email": email, "password": PASSWORD, "name": "Kim Rider", "phone": "010-1234-5678" }))
            .send()
    }));
    let meanwhile = async {
        // Requests that hash nothing are served during the burst.
        let me = app.get("/members/me", Some(&rider)).await;
        let live = app.client.get(app.url("/health/live")).send().await.expect("live");
        (me.status().as_u16(), live.status().as_u16())
    };
    let (responses, (me, live)) = tokio::join!(burst, meanwhile);
    assert_eq!((me, live), (200, 200));

    let mut refused = Vec::new();
    let mut created = 0;
    for (email, response) in emails.iter().zip(responses) {
        let response = response.expect("the server answers");
        match response.status().as_u16() {
            201 => created += 1,
            503 => {
                let retry_after = response.headers().get("retry-after").cloned();
                let problem = assert_problem(response, 503, "auth.busy").await;
                assert!(retry_after.is_some(), "{problem}");
                refused.push(email.clone());
            }
            other => panic!("sign-up answered {other}"),
        }
    }
    assert!(
        created >= 3 && !refused.is_empty(),
        "{created} created, {} refused",
        refused.len()
    );
    // Nothing was half-done: each refused sign-up succeeds when retried, one at a time.
    for email in &refused {
        json_body(app.sign_up(email).await, 201).await;
    }
}

#[tokio::test]
async fn sign_ups_are_limited_per_client_ip() {
    let app = spawn_app_with(|c| c.auth.sign_up_per_ip_per_minute = 3).await;
    for _ in 0..3 {
        json_body(app.sign_up(&unique_email("limited")).await, 201).await;
    }
    let response = app.sign_up(&unique_email("limited")).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, 429, "rate_limited").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_login_limits_follow_the_client_not_what_it_claims() {
    // The test client (127.0.0.1) stands for the load balancer.
    let app = spawn_app_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.auth.login_per_ip_per_minute = 3;
    })
    .await;
    let email = unique_email("proxied");
    json_body(app.sign_up(&email).await, 201).await;
    let login = |forwarded: &str, password: &str| {
        app.request(reqwest::Method::POST, "/auth/login", None)
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "email": email, "password": password }))
    };
    // The client 198.51.100.7 rotates what it claims to be: the limit still counts it.
    for claimed in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
        let forwarded = format!("{claimed}, 198.51.100.7");
        assert_problem(
            app.send(login(&forwarded, "wrong password!")).await,
            401,
            "auth.invalid_credentials",
        )
        .await;
    }
    assert_problem(
        app.send(login("4.4.4.4, 198.51.100.7", PASSWORD)).await,
        429,
        "rate_limited",
    )
    .await;
    // Another client behind the same proxy is not locked out.
    json_body(app.send(login("198.51.100.8", PASSWORD)).await, 200).await;
}

#[tokio::test]
async fn a_guesser_cannot_lock_the_owner_out_from_another_address() {
    let app = spawn_app_with(|c| {
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.auth.login_per_ip_and_email_per_minute = 3;
        c.auth.login_per_email_per_hour = 5;
    })
    .await;
    let email = unique_email("victim");
    json_body(app.sign_up(&email).await, 201).await;
    let login = |from: &str, password: &str| {
        app.request(reqwest::Method::POST, "/auth/login", None)
            .header("x-forwarded-for", from)
            .json(&json!({ "email": email, "password": password }))
    };
    for _ in 0..3 {
        assert_problem(
            app.send(login("203.0.113.66", "wrong password!")).await,
            401,
            "auth.invalid_credentials",
        )
        .await;
    }
    assert_problem(
        app.send(login("203.0.113.66", "wrong password!")).await,
        429,
        "rate_limited",
    )
    .await;
    // The owner, elsewhere, still logs in: the e-mail's 4th counted attempt of 5 per hour
    // (the refused one was stopped before the e-mail's count).
    json_body(app.send(login("198.51.100.20", PASSWORD)).await, 200).await;
    // Guessers spread over many addresses meet the e-mail's ceiling: the 5th passes the
    // limits (and fails the password), the 6th is refused whatever the address.
    assert_problem(
        app.send(login("203.0.113.67", "wrong password!")).await,
        401,
        "auth.invalid_credentials",
    )
    .await;
    assert_problem(
        app.send(login("203.0.113.68", "wrong password!")).await,
        429,
        "rate_limited",
    )
    .await;
}
