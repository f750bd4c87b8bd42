//! `/api/v1/usage`: the tenant's metered usage and invoices, and its budget.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portal_controller::Controller;
use portal_types::billing::{BudgetSet, Invoice, UsageSummary};
use portal_types::ids::TenantUuid;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiError, ApiResult, Body, Caller, PathOf, QueryOf, no_content, reply};

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(usage_summary))
        .routes(routes!(invoice_get))
        .routes(routes!(budget_set))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthQuery {
    /// `YYYY-MM` (UTC); none: this month.
    pub month: Option<String>,
}

/// A month of usage: cost to date, forecast, burn per hour, daily costs and breakdowns.
#[utoipa::path(get, path = "/usage", tag = "usage",
    params(MonthQuery),
    responses((status = 200, body = UsageSummary)))]
async fn usage_summary(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(query): QueryOf<MonthQuery>,
) -> ApiResult<UsageSummary> {
    let result = ctl.usage_summary(&caller.0, query.month.as_deref()).await;
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvoiceQuery {
    /// Another tenant's invoice (provider admins only).
    #[param(value_type = Option<String>, format = Uuid)]
    pub tenant: Option<TenantUuid>,
}

/// A month's invoice: one line per instance, item and price, to the cent.
#[utoipa::path(get, path = "/usage/invoices/{month}", tag = "usage",
    params(("month" = String, Path, description = "`YYYY-MM` (UTC)"), InvoiceQuery),
    responses((status = 200, body = Invoice)))]
async fn invoice_get(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(month): PathOf<String>,
    QueryOf(query): QueryOf<InvoiceQuery>,
) -> ApiResult<Invoice> {
    let result = ctl.invoice(&caller.0, query.tenant, &month).await;
    reply(&caller, StatusCode::OK, result)
}

/// Sets the tenant's monthly budget (tenant admins); an empty `monthly` clears it.
#[utoipa::path(put, path = "/usage/budget", tag = "usage",
    request_body = BudgetSet,
    responses((status = 204, description = "Set")))]
async fn budget_set(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(set): Body<BudgetSet>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.budget_set(&caller.0, &set).await;
    no_content(&caller, result)
}
