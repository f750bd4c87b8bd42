//! `/api/v1/events`: the live status stream as server-sent events. Each viewer gets the
//! events of their own tenant and the fleet-wide ones, nothing else, and only while they
//! may still read instances: the session is checked again every few seconds, so the stream
//! ends soon after sign-out, the session's end, disabling, suspension or removal from the
//! tenant. It also ends when the portal shuts down. Scripts follow it with an API token
//! (`Authorization: Bearer gpc_…`), checked again the same way.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use portal_controller::Controller;
use portal_controller::OpContext;
use portal_controller::authz::{Action, Actor};
use portal_web::{DbSessionStore, Session};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// How often an open stream checks that its viewer may still see it.
const RECHECK: Duration = Duration::from_secs(2);

/// Turns true when the portal starts shutting down.
#[derive(Clone)]
pub struct Stopping(pub watch::Receiver<bool>);

/// What a viewer proved who they are with, to prove it again while they watch.
pub enum Credential {
    Session(tower_sessions::session::Id),
    Token(String),
}

pub async fn events(
    State(controller): State<Arc<Controller>>,
    Extension(Stopping(mut stopping)): Extension<Stopping>,
    headers: HeaderMap,
    session: Session,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, StatusCode> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    let (opctx, credential) = match bearer {
        Some(token) => {
            let opctx = controller
                .token_actor(&token, None)
                .await
                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
                .ok_or(StatusCode::UNAUTHORIZED)?;
            (opctx, Credential::Token(token))
        }
        None => {
            let actor = portal_web::actor(&controller, &session, None)
                .await
                .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?
                .ok_or(StatusCode::UNAUTHORIZED)?;
            let id = session.id().ok_or(StatusCode::UNAUTHORIZED)?;
            (OpContext::for_session(Some(actor)), Credential::Session(id))
        }
    };
    let actor = opctx.authorize(Action::InstanceRead).map_err(|_| StatusCode::FORBIDDEN)?.clone();
    let mut bus = controller.events().subscribe();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.tick().await;
        loop {
            let event = tokio::select! {
                received = bus.recv() => match received {
                    // A viewer too slow to keep up loses the stream; the browser reconnects
                    // and refetches.
                    Ok(e) if e.tenant_id.is_none() || e.tenant_id == Some(actor.tenant_id) => {
                        Event::default().json_data(&e.event).unwrap_or_default()
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => break,
                },
                _ = recheck.tick() => {
                    if still_allowed(&controller, &credential, &actor, Action::InstanceRead).await { continue } else { break }
                }
                () = async { let _ = stopping.wait_for(|s| *s).await; } => break,
                () = tx.closed() => break,
            };
            if tx.send(Ok(event)).await.is_err() {
                break;
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The session or token still works, still acts as the same user in the same tenant, and
/// may still do `action` there (read instances, for the live stream).
pub async fn still_allowed(
    controller: &Controller,
    credential: &Credential,
    actor: &Actor,
    action: Action,
) -> bool {
    let now = match credential {
        Credential::Session(id) => {
            // A fresh look at the stored session, not the copy this request loaded.
            let store = DbSessionStore::new(controller.datastore().clone());
            let fresh = Session::new(Some(*id), Arc::new(store), None);
            portal_web::actor(controller, &fresh, None).await.map(OpContext::for_session)
        }
        Credential::Token(token) => controller
            .token_actor(token, None)
            .await
            .map(|o| o.unwrap_or_else(OpContext::anonymous)),
    };
    match now {
        Ok(now) => now
            .authorize(action)
            .is_ok_and(|now| now.user_id == actor.user_id && now.tenant_id == actor.tenant_id),
        Err(_) => false,
    }
}
