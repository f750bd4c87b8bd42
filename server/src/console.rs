//! `GET /instances/{id}/console/ws`: an instance's serial console over a WebSocket.
//!
//! The session cookie authenticates and the `Origin` must be the portal's (a page of another
//! site could otherwise open it with the visitor's cookie: cross-site WebSocket hijacking).
//! The first frame is text, `{"mode":"read-write"}` or `{"mode":"read-only"}`; then binary
//! frames carry console bytes both ways (a read-only session's are dropped). The socket is
//! closed with a sentence as its reason when the console cannot open or ends, when the
//! session may no longer see it (checked every few seconds, as the live stream does), and
//! when the portal shuts down; a browser that goes away (or stops answering pings) hangs up
//! on the host agent.
//!
//! Without the upgrade headers (a plain GET) the route answers the status the opening
//! would have met, or 426, so that the authorization matrix covers it like any route.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portal_controller::authz::Action;
use portal_controller::{Console, Controller, OpContext};
use portal_types::Error;
use portal_types::ids::InstanceUuid;
use portal_web::Session;
use tokio::time::Instant;

use crate::client_ip::ClientIp;
use crate::csrf::PublicOrigin;
use crate::live::{Credential, Stopping, still_allowed};

/// The path, for the route table.
pub const PATH: &str = "/instances/{id}/console/ws";

/// The largest message a browser may send (it sends keystrokes and pastes in 4 KiB frames).
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How often the server pings an idle browser…
const PING_EVERY: Duration = Duration::from_secs(20);
/// …and how long it waits to hear anything back before hanging up.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How long one frame may take to go out to the browser, or one chunk of input to the agent.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// How often an open console checks that its user may still use it.
const RECHECK: Duration = Duration::from_secs(5);
/// A close frame's reason is at most 123 bytes.
const MAX_REASON_BYTES: usize = 123;

#[allow(clippy::too_many_arguments, reason = "one axum extractor each")]
pub async fn console(
    State(controller): State<Arc<Controller>>,
    Extension(public): Extension<PublicOrigin>,
    Extension(stopping): Extension<Stopping>,
    client: Option<Extension<ClientIp>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    session: Session,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Some(refused) = crate::csrf::cross_origin(&headers, &public) {
        return (StatusCode::FORBIDDEN, refused).into_response();
    }
    let client = client.map(|Extension(ClientIp(ip))| ip);
    let actor = match portal_web::actor(&controller, &session, client).await {
        Ok(Some(actor)) => actor,
        Ok(None) => return refusal(&Error::Unauthenticated),
        Err(e) => return refusal(&e),
    };
    let (Some(session_id), Ok(id)) = (session.id(), id.parse::<InstanceUuid>()) else {
        return refusal(&Error::not_found("instance", id));
    };
    let opctx = OpContext::for_session(Some(actor));
    let opened = controller.instance_console(&opctx, id).await;
    let upgrade = match (upgrade, &opened) {
        (Ok(upgrade), _) => upgrade,
        (Err(_), Err(e)) => return refusal(e),
        (Err(_), Ok(_)) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                "The console is a WebSocket; open it from the instance page.",
            )
                .into_response();
        }
    };
    upgrade.max_message_size(MAX_MESSAGE_BYTES).on_upgrade(move |mut socket| async move {
        let ending = match opened {
            Ok(console) => {
                let watch = Watch { controller, session_id, opctx, stopping };
                serve(&mut socket, console, watch).await
            }
            Err(e) => Some((close_code::POLICY, e.to_string())),
        };
        if let Some((code, reason)) = ending {
            let frame = CloseFrame { code, reason: truncated(&reason).into() };
            let _ =
                tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
        }
    })
}

/// The error's status and sentence, for a request that was not upgraded.
fn refusal(e: &Error) -> Response {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(detail) = e.internal_detail() {
        tracing::warn!(status = status.as_u16(), %detail, "console refused");
    }
    (status, e.to_string()).into_response()
}

/// What an open console keeps an eye on besides its two streams.
struct Watch {
    controller: Arc<Controller>,
    session_id: tower_sessions::session::Id,
    opctx: OpContext,
    stopping: Stopping,
}

/// Relays until one side ends. Returns the close frame to send, or `None` when the browser
/// is gone (nothing to tell it).
async fn serve(socket: &mut WebSocket, console: Console, watch: Watch) -> Option<(u16, String)> {
    let Console { mut output, mut input, .. } = console;
    let (mode, needed) = match input {
        Some(_) => ("read-write", Action::InstancePower),
        None => ("read-only", Action::InstanceRead),
    };
    let hello = serde_json::json!({ "mode": mode }).to_string();
    send(socket, Message::Text(hello.into())).await?;
    let Watch { controller, session_id, opctx, stopping: Stopping(mut stopping) } = watch;
    let actor = opctx.actor()?.clone();
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut recheck = tokio::time::interval(RECHECK);
    // Both fire at once first.
    ping.tick().await;
    recheck.tick().await;
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            out = output.next() => match out {
                Some(Ok(bytes)) => send(socket, Message::Binary(Bytes::from(bytes))).await?,
                Some(Err(e)) => return Some((close_code::ERROR, e.to_string())),
                None => {
                    return Some((
                        close_code::NORMAL,
                        "The console ended: the VM was removed from its host.".to_owned(),
                    ));
                }
            },
            received = socket.recv() => {
                heard = Instant::now();
                match received {
                    Some(Ok(Message::Binary(bytes))) => {
                        // A read-only session's keystrokes go nowhere.
                        if let Some(input) = input.as_mut() {
                            match tokio::time::timeout(SEND_TIMEOUT, input.send(&bytes)).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => return Some((close_code::ERROR, e.to_string())),
                                Err(_) => {
                                    return Some((
                                        close_code::ERROR,
                                        "The host is not taking input; reconnect.".to_owned(),
                                    ));
                                }
                            }
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    return None;
                }
                send(socket, Message::Ping(Bytes::new())).await?;
            }
            _ = recheck.tick() => {
                if !still_allowed(&controller, &Credential::Session(session_id), &actor, needed).await {
                    return Some((
                        close_code::POLICY,
                        "Your session ended or your role changed; reload the page.".to_owned(),
                    ));
                }
            }
            () = async { let _ = stopping.wait_for(|s| *s).await; } => {
                return Some((
                    close_code::AWAY,
                    "The portal is restarting; reconnect in a moment.".to_owned(),
                ));
            }
        }
    }
}

/// Sends one frame; `None` when the browser is gone or has stopped reading.
async fn send(socket: &mut WebSocket, message: Message) -> Option<()> {
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Some(()),
        _ => None,
    }
}

/// `reason` cut to fit a close frame, at a character boundary.
fn truncated(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_REASON_BYTES - '…'.len_utf8();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_reasons_fit_a_frame() {
        let long = "é".repeat(100);
        let cut = super::truncated(&long);
        assert!(cut.len() <= super::MAX_REASON_BYTES && cut.ends_with('…'), "{cut}");
        assert_eq!(super::truncated("short"), "short");
    }
}
