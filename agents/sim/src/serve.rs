//! One agent's gRPC server on an ephemeral loopback port, stopped by a shared signal.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::{Router, TcpIncoming};
use tracing::warn;

/// A running server: where it listens and the task serving it.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Binds `127.0.0.1:0` and serves `router` there until `stop` turns true. Returns once the
/// port is bound, so the address can be published before the first connection.
pub async fn serve_on_loopback(
    router: Router,
    stop: watch::Receiver<bool>,
) -> std::io::Result<RunningServer> {
    serve_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), router, stop).await
}

/// Serves `router` on `addr` until `stop` turns true (an agent that comes back where it was).
pub async fn serve_on(
    addr: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    // Small gRPC frames on loopback must not wait for Nagle's algorithm.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(async move {
        let signal = async move {
            // An error means the sender is gone: stop as well.
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(err) = router.serve_with_incoming_shutdown(incoming, signal).await {
            warn!(%addr, error = %err, "agent server stopped with an error");
        }
    });
    Ok(RunningServer { addr, task })
}
