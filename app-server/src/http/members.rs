//! Members and authentication: sign-up, login, refresh, logout, profile, withdrawal.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use application::members::SignUp;

use super::AppState;
use super::dto::{LoginBody, MemberBody, RefreshBody, SignUpBody, TokenBody};
use super::error::{ApiResult, ProblemBody};
use super::extract::{AppJson, Auth, ClientIp};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me, withdraw))
}

fn token_body(pair: application::members::TokenPair) -> TokenBody {
    TokenBody {
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        token_type: "Bearer".to_owned(),
        expires_in: pair.expires_in.as_secs(),
    }
}

/// Sign up as a rider.
#[utoipa::path(post, path = "/members", tag = "members", request_body = SignUpBody,
    responses((status = 201, body = MemberBody), (status = 409, body = ProblemBody, description = "member.email_taken"),
        (status = 422, body = ProblemBody), (status = 429, body = ProblemBody, description = "rate_limited"),
        (status = 503, body = ProblemBody, description = "auth.busy")))]
async fn sign_up(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<SignUpBody>,
) -> ApiResult<(StatusCode, Json<MemberBody>)> {
    let member = state
        .services
        .members
        .sign_up_from(
            SignUp {
                email: body.email,
                password: body.password,
                name: body.name,
                phone: body.phone,
            },
            &ip,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(member.into())))
}

/// Log in with e-mail and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = TokenBody), (status = 401, body = ProblemBody, description = "auth.invalid_credentials"),
        (status = 429, body = ProblemBody), (status = 503, body = ProblemBody, description = "auth.busy")))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    AppJson(body): AppJson<LoginBody>,
) -> ApiResult<Json<TokenBody>> {
    let pair = state.services.members.login(&body.email, &body.password, &ip).await?;
    Ok(Json(token_body(pair)))
}

/// Trade a refresh token for a new pair. A spent token reused revokes its whole family.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = TokenBody), (status = 401, body = ProblemBody, description = "auth.invalid_refresh_token, auth.refresh_token_reused")))]
async fn refresh(State(state): State<AppState>, AppJson(body): AppJson<RefreshBody>) -> ApiResult<Json<TokenBody>> {
    let pair = state.services.members.refresh(&body.refresh_token).await?;
    Ok(Json(token_body(pair)))
}

/// Log out: revokes the refresh tokens of this login.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ProblemBody)))]
async fn logout(State(state): State<AppState>, auth: Auth) -> ApiResult<StatusCode> {
    state.services.members.logout(&auth.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's profile.
#[utoipa::path(get, path = "/members/me", tag = "members", security(("bearer" = [])),
    responses((status = 200, body = MemberBody), (status = 401, body = ProblemBody)))]
async fn me(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<MemberBody>> {
    Ok(Json(state.services.members.profile(auth.0.member_id).await?.into()))
}

/// Withdraw: the member's refresh tokens are revoked and their insurance expires.
#[utoipa::path(delete, path = "/members/me", tag = "members", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ProblemBody), (status = 409, body = ProblemBody, description = "member.already_withdrawn")))]
async fn withdraw(State(state): State<AppState>, auth: Auth) -> ApiResult<StatusCode> {
    state.services.members.withdraw(auth.0.member_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
