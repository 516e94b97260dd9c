//! Two `app-server` instances sharing one PostgreSQL database and one Redis, as behind a
//! load balancer: first-come-first-served coupons never over-issue, rate limits, refresh
//! tokens and cached products hold across both instances. On one Redis server and,
//! unchanged, on a Redis Cluster (`crate::TARGET`).

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use application::members::SignUp;
use core_domain::TokenFamilyId;
use core_domain::member::Role;
use ports::AccessClaims;
use tests::cluster::{self, Cluster, PASSWORD};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("HTTP client")
}

async fn two_instances(configure: impl Fn(&mut app_server::config::Config)) -> Option<Cluster> {
    let redis = crate::TARGET.url().await?;
    cluster::start(2, &redis, configure).await
}

/// `(status, body)`; a body that is not JSON is `Null`.
async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_issues_from_two_thousand_members_on_two_instances_issue_exactly_a_hundred_coupons() {
    let Some(cluster) = two_instances(|_| {}).await else {
        return;
    };
    let campaign = cluster.campaign(100).await;
    let riders = cluster.riders(2_000).await;
    let client = client();

    // Five rounds over every member, each request to the instance the round and the member
    // pick, 64 in flight.
    let requests = (0..5).flat_map(|round| (0..riders.len()).map(move |i| (i, (i + round) % 2)));
    let answers: Vec<(usize, StatusCode, Value)> = futures::stream::iter(requests)
        .map(|(i, instance)| {
            let url = cluster.instance(instance).api(&format!("/coupons/{campaign}/issue"));
            let request = client.post(url).bearer_auth(&riders[i].1);
            async move {
                let (status, body) = answer(request.send().await.expect("the instance answers")).await;
                (i, status, body)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;

    assert_eq!(answers.len(), 10_000);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut winners = HashSet::new();
    for (i, status, body) in &answers {
        match status.as_u16() {
            201 => {
                assert_eq!(body["campaign_id"], campaign.to_string(), "{body}");
                assert!(winners.insert(*i), "member {i} was issued twice");
                *outcomes.entry("issued".to_owned()).or_default() += 1;
            }
            409 => {
                *outcomes
                    .entry(body["code"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 100, "{outcomes:?}");
    let refused = outcomes.get("coupon.sold_out").copied().unwrap_or_default()
        + outcomes.get("coupon.already_issued").copied().unwrap_or_default();
    assert_eq!(refused, 9_900, "{outcomes:?}");
    assert_eq!(cluster.issued(campaign).await, (100, 100, 100));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_and_login_rate_limits_hold_across_both_instances() {
    let Some(cluster) = two_instances(|config| {
        config.auth.api_per_member_per_minute = 10;
        config.auth.login_per_email_per_hour = 3;
    })
    .await
    else {
        return;
    };
    let client = client();
    let (_, token) = cluster.riders(1).await.remove(0);

    let mut statuses = Vec::new();
    for i in 0..16 {
        let response = client
            .get(cluster.instance(i).api("/points"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            // One call comes back every 60 s / 10.
            assert!((1..=6).contains(&retry_after), "Retry-After: {retry_after}");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [[200; 10].as_slice(), [429; 6].as_slice()].concat());

    let email = format!("limited-{}@example.com", Uuid::new_v4());
    let mut statuses = Vec::new();
    for i in 0..5 {
        let response = client
            .post(cluster.instance(i).api("/auth/login"))
            .json(&json!({ "email": email, "password": "not the password" }))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_token_rotated_on_one_instance_is_spent_on_the_other() {
    let Some(cluster) = two_instances(|_| {}).await else {
        return;
    };
    let client = client();
    let email = format!("rotating-{}@example.com", Uuid::new_v4());
    cluster.instances[0]
        .runtime()
        .services
        .members
        .create_account(
            SignUp {
                email: email.clone(),
                password: PASSWORD.to_owned(),
                name: "Kim Rider".to_owned(),
                phone: "010-1234-5678".to_owned(),
            },
            Role::Rider,
        )
        .await
        .unwrap();
    let login = client
        .post(cluster.instance(0).api("/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let (status, first) = answer(login).await;
    assert_eq!(status, StatusCode::OK, "{first}");

    let refresh = |instance: usize, token: &Value| {
        client
            .post(cluster.instance(instance).api("/auth/refresh"))
            .json(&json!({ "refresh_token": token }))
            .send()
    };
    let (status, second) = answer(refresh(1, &first["refresh_token"]).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    // Replaying the spent token on the first instance is a reuse: the family is revoked…
    let (status, body) = answer(refresh(0, &first["refresh_token"]).await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("auth.refresh_token_reused"))
    );
    // …so the rotated token is dead on the second one too.
    let (status, body) = answer(refresh(1, &second["refresh_token"]).await.unwrap()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("auth.invalid_refresh_token"))
    );

    // With Redis configured the SQL store holds no refresh tokens.
    let pool = sqlx::PgPool::connect(&cluster.database.primary_url).await.unwrap();
    let stored: i64 = sqlx::query_scalar("select count(*) from refresh_tokens")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    pool.close().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_product_changed_on_one_instance_reads_changed_on_the_other_at_once() {
    let Some(cluster) = two_instances(|config| {
        // Long enough that only the write-through can explain a fresh read.
        config.cache.product_ttl = std::time::Duration::from_secs(600);
    })
    .await
    else {
        return;
    };
    let client = client();
    let runtime = cluster.instances[0].runtime();
    let admin = runtime
        .services
        .members
        .create_account(
            SignUp {
                email: format!("admin-{}@example.com", Uuid::new_v4()),
                password: PASSWORD.to_owned(),
                name: "Admin".to_owned(),
                phone: "02-1234-5678".to_owned(),
            },
            Role::Admin,
        )
        .await
        .unwrap();
    let admin_token = runtime
        .ports
        .access_tokens
        .issue(&AccessClaims {
            member_id: admin.id,
            role: Role::Admin,
            family_id: TokenFamilyId(Uuid::now_v7()),
            expires_at: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        })
        .unwrap();

    let created = client
        .post(cluster.instance(0).api("/admin/products"))
        .bearer_auth(&admin_token)
        .json(&json!({ "name": "Helmet", "price": 30_000, "stock": 5 }))
        .send()
        .await
        .unwrap();
    let (status, product) = answer(created).await;
    assert_eq!(status, StatusCode::CREATED, "{product}");
    let path = format!("/products/{}", product["id"].as_str().unwrap());
    for instance in 0..2 {
        let (status, read) = answer(client.get(cluster.instance(instance).api(&path)).send().await.unwrap()).await;
        assert_eq!((status, read["price"].as_i64()), (StatusCode::OK, Some(30_000)));
    }

    let patched = client
        .patch(cluster.instance(0).api(&format!("/admin{path}")))
        .bearer_auth(&admin_token)
        .json(&json!({ "price": 25_000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let (status, read) = answer(client.get(cluster.instance(1).api(&path)).send().await.unwrap()).await;
    assert_eq!((status, read["price"].as_i64()), (StatusCode::OK, Some(25_000)));

    for instance in 0..2 {
        let url = format!("{}/health/ready", cluster.instance(instance).address);
        let (status, health) = answer(client.get(url).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{health}");
        assert_eq!(health["components"]["redis"]["status"], "up", "{health}");
    }
    cluster.shutdown().await;
}
