//! What admins manage in the admin web: products, coupon campaigns, insurance plans and CX
//! accounts. Each page checks the admin role on the server; each form goes through the same
//! use case as the API.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use application::coupons::CampaignRequest;
use application::members::SignUp;
use core_domain::coupon::Discount;
use core_domain::insurance::{PlanPatch, PlanStatus};
use core_domain::member::Role;
use core_domain::{CampaignId, PlanId, ProductId};

use super::i18n::{Lang, Msg};
use super::view::{csrf, parse_local, when, won};
use super::{Page, PageResult, StaffForm, see_other};
use crate::http::AppState;

/// `raw` as a whole number for `field`, or the error page.
fn number(page: &Page, field: &str, raw: &str) -> Result<i64, Response> {
    raw.trim().parse::<i64>().map_err(|_| {
        page.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{field}: must be a whole number"),
        )
    })
}

/// An optional number: empty is `None`.
fn optional_number(page: &Page, field: &str, raw: &str) -> Result<Option<i64>, Response> {
    if raw.trim().is_empty() {
        Ok(None)
    } else {
        number(page, field, raw).map(Some)
    }
}

/// A saved-notice for `?saved=…`.
fn saved_notice(page: &Page, saved: Option<&str>) -> Markup {
    html! {
        @if let Some(saved) = saved {
            div.notice.ok role="status" data-testid="saved" { (page.lang.t(Msg::Saved)) " " (saved) }
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    after: Option<Uuid>,
    #[serde(default)]
    saved: Option<String>,
}

/// Rows per page of the admin lists.
const PAGE: usize = 100;

/// The link to the page after `last`, when this one was full.
fn next_page(lang: Lang, path: &str, shown: usize, last: Option<impl std::fmt::Display>) -> Markup {
    html! {
        @if shown == PAGE {
            @if let Some(last) = last {
                nav.pager aria-label=(lang.t(Msg::NextPage)) {
                    a href={ (path) "?after=" (last) } rel="next" { (lang.t(Msg::NextPage)) }
                }
            }
        }
    }
}

/// Products, a page of 100, each with a price/stock form, and the creation form.
pub async fn products(State(state): State<AppState>, page: Page, Query(q): Query<ListQuery>) -> PageResult {
    page.admin()?;
    let lang = page.lang;
    let products = state
        .services
        .catalog
        .list(q.after.map(ProductId), Some(PAGE as i64))
        .await
        .map_err(|e| page.failed(e))?;
    let body = html! {
        h1 { (lang.t(Msg::Products)) }
        (saved_notice(&page, q.saved.as_deref()))
        section aria-labelledby="create" {
            h2 #create { (lang.t(Msg::CreateProduct)) }
            form.row method="post" action="/admin/products" {
                (csrf(&page.staff))
                label for="p_name" { (lang.t(Msg::Name)) }
                input #p_name name="name" required maxlength="100";
                label for="p_price" { (lang.t(Msg::Price)) }
                input #p_price name="price" type="number" min="0" required;
                label for="p_stock" { (lang.t(Msg::Stock)) }
                input #p_stock name="stock" type="number" min="0" required;
                button type="submit" { (lang.t(Msg::Create)) }
            }
        }
        table {
            thead { tr {
                th scope="col" { (lang.t(Msg::Name)) }
                th scope="col" { (lang.t(Msg::Price)) }
                th scope="col" { (lang.t(Msg::Stock)) }
                th scope="col" { (lang.t(Msg::Save)) }
            } }
            tbody {
                @for p in &products {
                    tr {
                        td { (p.name) }
                        td.num { (won(lang, p.price)) }
                        td.num { (p.stock) }
                        td {
                            form.inline method="post" action={ "/admin/products/" (p.id) } {
                                (csrf(&page.staff))
                                input name="price" type="number" min="0" value=(p.price)
                                    aria-label={ (p.name) " — " (lang.t(Msg::Price)) };
                                input name="stock" type="number" min="0" value=(p.stock)
                                    aria-label={ (p.name) " — " (lang.t(Msg::Stock)) };
                                button type="submit" aria-label={ (p.name) " — " (lang.t(Msg::Save)) } { (lang.t(Msg::Save)) }
                            }
                        }
                    }
                }
            }
        }
        (next_page(lang, "/admin/products", products.len(), products.last().map(|last| last.id)))
    };
    Ok(page.render(lang.t(Msg::Products), body))
}

#[derive(Deserialize)]
pub struct ProductForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    stock: String,
}

pub async fn create_product(
    State(state): State<AppState>,
    StaffForm { page, form }: StaffForm<ProductForm>,
) -> PageResult {
    page.admin()?;
    let (price, stock) = (
        number(&page, "price", &form.price)?,
        number(&page, "stock", &form.stock)?,
    );
    let product = state
        .services
        .catalog
        .create(&form.name, price, stock)
        .await
        .map_err(|e| page.failed(e))?;
    Ok(see_other(&format!(
        "/admin/products?saved={}",
        super::view::urlencode(&product.name)
    )))
}

pub async fn update_product(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    StaffForm { page, form }: StaffForm<ProductForm>,
) -> PageResult {
    page.admin()?;
    let price = optional_number(&page, "price", &form.price)?;
    let stock = optional_number(&page, "stock", &form.stock)?;
    let product = state
        .services
        .catalog
        .update(ProductId(id), price, stock)
        .await
        .map_err(|e| page.failed(e))?;
    Ok(see_other(&format!(
        "/admin/products?saved={}",
        super::view::urlencode(&product.name)
    )))
}

/// Every plan, retired ones too, with rename/re-price/retire forms, and the creation form.
pub async fn plans(State(state): State<AppState>, page: Page, Query(q): Query<ListQuery>) -> PageResult {
    page.admin()?;
    let lang = page.lang;
    let plans = state.services.insurance.plans(true).await.map_err(|e| page.failed(e))?;
    let body = html! {
        h1 { (lang.t(Msg::Plans)) }
        (saved_notice(&page, q.saved.as_deref()))
        section aria-labelledby="create" {
            h2 #create { (lang.t(Msg::CreatePlan)) }
            form.row method="post" action="/admin/plans" {
                (csrf(&page.staff))
                label for="plan_name" { (lang.t(Msg::Name)) }
                input #plan_name name="name" required maxlength="100";
                label for="plan_premium" { (lang.t(Msg::HourlyPremium)) }
                input #plan_premium name="hourly_premium" type="number" min="1" required;
                button type="submit" { (lang.t(Msg::Create)) }
            }
        }
        table {
            thead { tr {
                th scope="col" { (lang.t(Msg::Name)) }
                th scope="col" { (lang.t(Msg::HourlyPremium)) }
                th scope="col" { (lang.t(Msg::Status)) }
                th scope="col" { (lang.t(Msg::Save)) }
            } }
            tbody {
                @for p in &plans {
                    tr {
                        td { (p.name) }
                        td.num { (won(lang, p.hourly_premium)) }
                        td { @if p.status == PlanStatus::Active { (lang.t(Msg::Active)) } @else { (lang.t(Msg::Retired)) } }
                        td {
                            form.inline method="post" action={ "/admin/plans/" (p.id) } {
                                (csrf(&page.staff))
                                input name="name" value=(p.name) aria-label={ (p.name) " — " (lang.t(Msg::Name)) };
                                input name="hourly_premium" type="number" min="1" value=(p.hourly_premium)
                                    aria-label={ (p.name) " — " (lang.t(Msg::HourlyPremium)) };
                                select name="status" aria-label={ (p.name) " — " (lang.t(Msg::Status)) } {
                                    option value="active" selected[p.status == PlanStatus::Active] { (lang.t(Msg::Active)) }
                                    option value="retired" selected[p.status == PlanStatus::Retired] { (lang.t(Msg::Retired)) }
                                }
                                button type="submit" aria-label={ (p.name) " — " (lang.t(Msg::Save)) } { (lang.t(Msg::Save)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page.render(lang.t(Msg::Plans), body))
}

#[derive(Deserialize)]
pub struct PlanForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    hourly_premium: String,
    #[serde(default)]
    status: Option<String>,
}

pub async fn create_plan(State(state): State<AppState>, StaffForm { page, form }: StaffForm<PlanForm>) -> PageResult {
    page.admin()?;
    let premium = number(&page, "hourly_premium", &form.hourly_premium)?;
    let plan = state
        .services
        .insurance
        .create_plan(&form.name, premium)
        .await
        .map_err(|e| page.failed(e))?;
    Ok(see_other(&format!(
        "/admin/plans?saved={}",
        super::view::urlencode(&plan.name)
    )))
}

pub async fn change_plan(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    StaffForm { page, form }: StaffForm<PlanForm>,
) -> PageResult {
    page.admin()?;
    let premium = optional_number(&page, "hourly_premium", &form.hourly_premium)?;
    let name = Some(form.name.as_str()).filter(|n| !n.trim().is_empty());
    let patch = PlanPatch::parse(name, premium, form.status.as_deref())
        .map_err(|e| page.failed(application::insurance::InsuranceError::from(e)))?;
    let plan = state
        .services
        .insurance
        .change_plan(PlanId(id), patch)
        .await
        .map_err(|e| page.failed(e))?;
    Ok(see_other(&format!(
        "/admin/plans?saved={}",
        super::view::urlencode(&plan.name)
    )))
}

/// Campaigns, a page of 100 in creation order with their issued counts, and the creation
/// form.
pub async fn campaigns(State(state): State<AppState>, page: Page, Query(q): Query<ListQuery>) -> PageResult {
    page.admin()?;
    let lang = page.lang;
    let campaigns = state
        .services
        .coupons
        .campaigns(q.after.map(CampaignId), PAGE as i64)
        .await
        .map_err(|e| page.failed(e))?;
    let body = html! {
        h1 { (lang.t(Msg::Campaigns)) }
        (saved_notice(&page, q.saved.as_deref()))
        section aria-labelledby="create" {
            h2 #create { (lang.t(Msg::CreateCampaign)) }
            form.stack method="post" action="/admin/campaigns" {
                (csrf(&page.staff))
                label for="c_name" { (lang.t(Msg::Name)) }
                input #c_name name="name" required maxlength="100";
                label for="c_kind" { (lang.t(Msg::DiscountKind)) }
                select #c_kind name="kind" {
                    option value="fixed" selected { (lang.t(Msg::Fixed)) }
                    option value="percent" { (lang.t(Msg::Percent)) }
                }
                label for="c_value" { (lang.t(Msg::DiscountValue)) }
                input #c_value name="value" type="number" min="1" required;
                label for="c_quantity" { (lang.t(Msg::Quantity)) }
                input #c_quantity name="total_quantity" type="number" min="1" required;
                label for="c_starts" { (lang.t(Msg::StartsAt)) }
                input #c_starts name="starts_at" type="datetime-local" step="1";
                label for="c_ends" { (lang.t(Msg::EndsAt)) }
                input #c_ends name="ends_at" type="datetime-local" step="1";
                button type="submit" { (lang.t(Msg::Create)) }
            }
        }
        @if campaigns.is_empty() {
            p { (lang.t(Msg::NoCampaigns)) }
        } @else {
            table data-testid="campaigns" {
                thead { tr {
                    th scope="col" { (lang.t(Msg::Name)) }
                    th scope="col" { (lang.t(Msg::Discount)) }
                    th scope="col" { (lang.t(Msg::IssuedOfTotal)) }
                    th scope="col" { (lang.t(Msg::Starts)) }
                    th scope="col" { (lang.t(Msg::Ends)) }
                } }
                tbody {
                    @for c in &campaigns {
                        tr {
                            td { (c.name) }
                            td.num { @match c.discount {
                                Discount::Fixed { amount } => { (won(lang, amount)) },
                                Discount::Percent { percent } => { (percent) "%" },
                            } }
                            td.num { (c.issued_count) " / " (c.total_quantity) }
                            td { (when(c.starts_at)) }
                            td { @match c.ends_at { Some(t) => { (when(t)) }, None => { (lang.t(Msg::Never)) } } }
                        }
                    }
                }
            }
        }
        (next_page(lang, "/admin/campaigns", campaigns.len(), campaigns.last().map(|last| last.id)))
    };
    Ok(page.render(lang.t(Msg::Campaigns), body))
}

#[derive(Deserialize)]
pub struct CampaignForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    total_quantity: String,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
}

pub async fn create_campaign(
    State(state): State<AppState>,
    StaffForm { page, form }: StaffForm<CampaignForm>,
) -> PageResult {
    page.admin()?;
    let value = number(&page, "value", &form.value)?;
    let total_quantity = number(&page, "total_quantity", &form.total_quantity)?;
    let discount = match form.kind.as_str() {
        "percent" => Discount::Percent { percent: value },
        _ => Discount::Fixed { amount: value },
    };
    let time = |field: &str, raw: &str| {
        if raw.trim().is_empty() {
            Ok(None)
        } else {
            parse_local(raw).map(Some).ok_or_else(|| {
                page.error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("{field}: not a date and time"),
                )
            })
        }
    };
    let (starts_at, ends_at) = (time("starts_at", &form.starts_at)?, time("ends_at", &form.ends_at)?);
    let request = CampaignRequest {
        name: form.name,
        discount,
        total_quantity,
        starts_at,
        ends_at,
    };
    let campaign = state
        .services
        .coupons
        .create_campaign(request)
        .await
        .map_err(|e| page.failed(e))?;
    let saved = format!("{} ({}) — {}", campaign.name, campaign.id, campaign.total_quantity);
    Ok(see_other(&format!(
        "/admin/campaigns?saved={}",
        super::view::urlencode(&saved)
    )))
}

/// The form that creates a CX account.
pub async fn staff(page: Page, Query(q): Query<ListQuery>) -> PageResult {
    page.admin()?;
    let lang = page.lang;
    let body = html! {
        h1 { (lang.t(Msg::StaffAccounts)) }
        (saved_notice(&page, q.saved.as_deref()))
        section aria-labelledby="create" {
            h2 #create { (lang.t(Msg::CreateStaff)) }
            form.stack method="post" action="/admin/staff" {
                (csrf(&page.staff))
                label for="s_email" { (lang.t(Msg::Email)) }
                input #s_email name="email" type="email" required autocomplete="off";
                label for="s_name" { (lang.t(Msg::Name)) }
                input #s_name name="name" required maxlength="50";
                label for="s_phone" { (lang.t(Msg::Phone)) }
                input #s_phone name="phone" type="tel" required;
                label for="s_password" { (lang.t(Msg::Password)) }
                input #s_password name="password" type="password" minlength="10" required autocomplete="new-password";
                button type="submit" { (lang.t(Msg::Create)) }
            }
        }
    };
    Ok(page.render(lang.t(Msg::StaffAccounts), body))
}

#[derive(Deserialize)]
pub struct StaffAccountForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    password: String,
}

pub async fn create_staff(
    State(state): State<AppState>,
    StaffForm { page, form }: StaffForm<StaffAccountForm>,
) -> PageResult {
    page.admin()?;
    let request = SignUp {
        email: form.email,
        password: form.password,
        name: form.name,
        phone: form.phone,
    };
    let member = state
        .services
        .members
        .create_account(request, Role::Cx)
        .await
        .map_err(|e| page.failed(e))?;
    Ok(see_other(&format!(
        "/admin/staff?saved={}",
        super::view::urlencode(&member.email)
    )))
}
