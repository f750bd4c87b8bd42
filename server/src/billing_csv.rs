//! CSV downloads of billing: a tenant's invoice (`/usage/invoices/{month}/csv`, provider
//! admins add `?tenant=<id>`) and the provider's month (`/admin/usage/{month}/csv`), for the
//! signed-in browser; authorization is the controller's, as for the pages.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use portal_controller::{Controller, OpContext};
use portal_types::Error;
use portal_types::ids::TenantUuid;
use portal_web::Session;

#[derive(serde::Deserialize)]
pub struct InvoiceQuery {
    tenant: Option<TenantUuid>,
}

pub async fn invoice(
    State(ctl): State<Arc<Controller>>,
    session: Session,
    Path(month): Path<String>,
    Query(query): Query<InvoiceQuery>,
) -> Response {
    let result = async {
        let opctx = signed_in(&ctl, &session).await?;
        ctl.invoice_csv(&opctx, query.tenant, &month).await
    }
    .await;
    csv(result, &format!("invoice-{month}.csv"))
}

pub async fn provider(
    State(ctl): State<Arc<Controller>>,
    session: Session,
    Path(month): Path<String>,
) -> Response {
    let result = async {
        let opctx = signed_in(&ctl, &session).await?;
        ctl.provider_usage_csv(&opctx, Some(&month)).await
    }
    .await;
    csv(result, &format!("usage-{month}.csv"))
}

async fn signed_in(ctl: &Controller, session: &Session) -> Result<OpContext, Error> {
    let actor = portal_web::actor(ctl, session, None).await?;
    Ok(OpContext::for_session(actor))
}

/// The CSV as a download, or the error's status and sentence.
fn csv(result: Result<String, Error>, file: &str) -> Response {
    match result {
        Ok(body) => {
            // The month was checked by the controller: the name is `[0-9-]` and `.csv`.
            let disposition = format!("attachment; filename=\"{file}\"");
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => {
            if let Some(detail) = e.internal_detail() {
                tracing::error!(%detail, "billing CSV failed");
            }
            let status =
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, e.to_string()).into_response()
        }
    }
}
