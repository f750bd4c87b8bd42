//! `/api/v1/events`: the live status stream as server-sent events. Each viewer gets the
//! events of their own tenant and the fleet-wide ones, nothing else.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use portal_controller::Controller;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tower_sessions::Session;

pub async fn events(
    State(controller): State<Arc<Controller>>,
    session: Session,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, StatusCode> {
    let actor = controller
        .session_actor(&session, None)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let tenant = actor.tenant_id;
    let stream = BroadcastStream::new(controller.events().subscribe())
        // A viewer too slow to keep up loses the stream; the browser reconnects and refetches.
        .map_while(|item| item.ok())
        .filter(move |e| e.tenant_id.is_none() || e.tenant_id == Some(tenant))
        .map(|e| Ok(Event::default().json_data(&e.event).unwrap_or_else(|_| Event::default())));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
