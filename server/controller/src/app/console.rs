//! An instance's serial console: the host agent's `Console` stream, opened for whoever may
//! read the instance. Only those who may power it (members, tenant and provider admins) get
//! an input: a viewer's session never carries a keystroke to the agent.
//!
//! Bounded everywhere: input goes to the agent in chunks of at most 4 KiB at a limited rate
//! (a paste waits instead of flooding the guest), and each user has at most
//! [`MAX_CONSOLES_PER_USER`] consoles open, counted in the database across replicas.

use std::time::Duration;

use agent_proto::v1::{ConsoleOutput, ConsoleRequest};
use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid, UserUuid};
use portal_types::views::InstanceState;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::Controller;
use crate::app::instances::host_of;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::{DataStore, now_ms};
use uuid::Uuid;

/// Consoles one user may have open at once, on all replicas together.
pub const MAX_CONSOLES_PER_USER: usize = 8;
/// The largest input chunk the agent takes in one request.
const INPUT_CHUNK_BYTES: usize = 4 * 1024;
/// Typing is refilled at this many bytes a second…
const INPUT_RATE: f64 = 16.0 * 1024.0;
/// …up to this many at once (a paste of a screenful goes through without waiting).
const INPUT_BURST: f64 = 64.0 * 1024.0;
/// Input requests queued for the agent before the typist waits.
const INPUT_QUEUE: usize = 16;
/// How long the agent may take to answer the opening request.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// An open console: its output and, for those who may type, its input. Dropping both hangs
/// up on the agent.
pub struct Console {
    pub instance_name: String,
    pub output: ConsoleStream,
    /// `None` for read-only sessions (viewers).
    pub input: Option<ConsoleInput>,
}

/// What the guest printed since it last started, then what it prints.
pub struct ConsoleStream {
    stream: tonic::Streaming<ConsoleOutput>,
    instance_name: String,
    host: String,
    /// Keeps the request stream open for read-only sessions too: the agent may take its end
    /// for a hang-up.
    _requests: mpsc::Sender<ConsoleRequest>,
    /// Counts against the user's open consoles for as long as the output is read.
    _slot: ConsoleSlot,
}

impl ConsoleStream {
    /// The next bytes; `None` when the agent ended the console (the VM was stopped or
    /// removed), an error when the link to the agent broke.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, Error>> {
        match self.stream.message().await {
            Ok(Some(out)) => Some(Ok(out.data)),
            Ok(None) => None,
            Err(status) if status.code() == tonic::Code::NotFound => Some(Err(Error::Conflict {
                message: format!("{} is no longer on its host.", self.instance_name),
            })),
            Err(status) => {
                tracing::warn!(host = %self.host, error = %status.message(), "console stream broke");
                Some(Err(Error::unavailable(format!(
                    "the console stream from host {} broke: {}",
                    self.host,
                    status.message()
                ))))
            }
        }
    }
}

/// Keystrokes for the console, rate-limited.
pub struct ConsoleInput {
    requests: mpsc::Sender<ConsoleRequest>,
    /// Bytes that may be sent now (a token bucket of [`INPUT_BURST`]).
    allowance: f64,
    refilled: Instant,
}

impl ConsoleInput {
    /// Types `bytes` into the console, in chunks of at most [`INPUT_CHUNK_BYTES`], waiting
    /// when the typist is faster than the rate allows. An error once the console is closed.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        for chunk in bytes.chunks(INPUT_CHUNK_BYTES) {
            self.wait_for_allowance(chunk.len() as f64).await;
            let request = ConsoleRequest { vm_id: String::new(), input: chunk.to_vec() };
            self.requests
                .send(request)
                .await
                .map_err(|_| Error::Conflict { message: "The console is closed.".to_owned() })?;
        }
        Ok(())
    }

    async fn wait_for_allowance(&mut self, bytes: f64) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.allowance = (self.allowance + elapsed * INPUT_RATE).min(INPUT_BURST);
        self.refilled = now;
        if self.allowance < bytes {
            let short = bytes - self.allowance;
            tokio::time::sleep(Duration::from_secs_f64(short / INPUT_RATE)).await;
            self.allowance = bytes;
            self.refilled = Instant::now();
        }
        self.allowance -= bytes;
    }
}

/// How often an open console's row is refreshed, and how long a row counts without one
/// (its replica died with the console open).
const SLOT_REFRESH: Duration = Duration::from_secs(10);
const SLOT_STALE: Duration = Duration::from_secs(45);

/// One open console of a user, counted in the database for every replica and kept counting
/// by its refresher; given back when dropped.
struct ConsoleSlot {
    datastore: DataStore,
    id: Uuid,
    refresher: tokio::task::JoinHandle<()>,
}

impl Drop for ConsoleSlot {
    fn drop(&mut self) {
        self.refresher.abort();
        let (datastore, id) = (self.datastore.clone(), self.id);
        // Drop cannot wait for the database; a row left behind (the runtime stopping) goes
        // stale and stops counting.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = datastore.console_slot_release(id).await {
                    tracing::warn!(console = %id, error = %e, "cannot record a closed console");
                }
            });
        }
    }
}

impl Controller {
    /// Takes one of `user`'s console slots, counted across replicas.
    async fn console_slot_take(&self, user: UserUuid) -> Result<ConsoleSlot, Error> {
        let now = now_ms();
        let stale_before = now - SLOT_STALE.as_millis() as i64;
        let limit = MAX_CONSOLES_PER_USER as u64;
        let taken = self
            .datastore
            .console_slot_take(user.into_untyped_uuid(), limit, now, stale_before)
            .await?;
        let id = taken.ok_or_else(|| Error::Conflict {
            message: format!(
                "You have {MAX_CONSOLES_PER_USER} consoles open already; close one first."
            ),
        })?;
        let datastore = self.datastore.clone();
        let refresher = tokio::spawn({
            let datastore = datastore.clone();
            async move {
                loop {
                    tokio::time::sleep(SLOT_REFRESH).await;
                    if let Err(e) = datastore.console_slot_refresh(id, now_ms()).await {
                        tracing::warn!(console = %id, error = %e, "cannot refresh an open console");
                    }
                }
            }
        });
        Ok(ConsoleSlot { datastore, id, refresher })
    }
}

impl Controller {
    /// Opens the serial console of an instance of the actor's tenant: read-write for those
    /// who may power it, read-only for everyone else who may read it. Another tenant's
    /// instance is not found; one without a host, or being deleted, is refused with a
    /// sentence saying why. Every opening is in the audit log (`instance.console`, or
    /// `instance.console_watch` read-only), refusals included.
    pub async fn instance_console(
        &self,
        opctx: &OpContext,
        id: InstanceUuid,
    ) -> Result<Console, Error> {
        let result = self.instance_console_unaudited(opctx, id).await;
        let what = match &result {
            Ok(console) if console.input.is_none() => "instance.console_watch",
            _ => "instance.console",
        };
        self.audited(opctx, what, "instance", &id.to_string(), result).await
    }

    async fn instance_console_unaudited(
        &self,
        opctx: &OpContext,
        id: InstanceUuid,
    ) -> Result<Console, Error> {
        let actor = opctx.authorize(Action::InstanceRead)?;
        // The authorization of stop and start: who may power a VM may type into it.
        let may_type = opctx.authorize(Action::InstancePower).is_ok();
        let row = self.datastore.instance_fetch_for(opctx, id, Action::InstanceRead).await?;
        let name = row.name.clone();
        let state = InstanceState::parse(&row.state).unwrap_or(InstanceState::Failed);
        if state == InstanceState::Deleting {
            return Err(Error::Conflict {
                message: format!("{name} is being deleted, so its console is closed."),
            });
        }
        let Some(host) = host_of(&row) else {
            return Err(Error::Conflict {
                message: format!(
                    "{name} has no host yet, so it has no console; wait until it runs."
                ),
            });
        };
        let slot = self.console_slot_take(actor.user_id).await?;
        let Some(mut client) = self.agents.host(&host) else {
            return Err(Error::unavailable(format!("the agent of host {host} is not connected")));
        };
        let (requests, queued) = mpsc::channel(INPUT_QUEUE);
        // The first request names the VM; it is queued before the call so the agent has it
        // at once.
        let first = ConsoleRequest { vm_id: row.id.to_string(), input: Vec::new() };
        requests.try_send(first).map_err(Error::internal)?;
        let opened =
            tokio::time::timeout(OPEN_TIMEOUT, client.console(ReceiverStream::new(queued))).await;
        let stream = match opened {
            Ok(Ok(response)) => response.into_inner(),
            // No such VM on the host yet, or one that has not started since the agent began.
            Ok(Err(status))
                if matches!(
                    status.code(),
                    tonic::Code::NotFound | tonic::Code::FailedPrecondition
                ) =>
            {
                return Err(Error::Conflict {
                    message: format!(
                        "{name} has not started yet, so it has no console; wait until it runs."
                    ),
                });
            }
            Ok(Err(status)) => {
                return Err(Error::unavailable(format!(
                    "host {host} refused the console: {}",
                    status.message()
                )));
            }
            Err(_) => {
                return Err(Error::unavailable(format!(
                    "host {host} did not open the console within {} s",
                    OPEN_TIMEOUT.as_secs()
                )));
            }
        };
        tracing::info!(instance = %row.id, user = %actor.username, %host, read_write = may_type, "console opened");
        let input = may_type.then(|| ConsoleInput {
            requests: requests.clone(),
            allowance: INPUT_BURST,
            refilled: Instant::now(),
        });
        Ok(Console {
            instance_name: name.clone(),
            output: ConsoleStream {
                stream,
                instance_name: name,
                host,
                _requests: requests,
                _slot: slot,
            },
            input,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn input_goes_in_4_kib_chunks_at_the_rate_after_a_burst() {
        let (requests, mut agent) = mpsc::channel::<ConsoleRequest>(INPUT_QUEUE);
        let received = tokio::spawn(async move {
            let mut sizes = Vec::new();
            while let Some(request) = agent.recv().await {
                sizes.push(request.input.len());
            }
            sizes
        });
        let mut input = ConsoleInput { requests, allowance: INPUT_BURST, refilled: Instant::now() };
        let started = std::time::Instant::now();
        // The burst, then half a second's worth more.
        input.send(&[b'x'; 64 * 1024 + 8 * 1024]).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(450), "{:?}", started.elapsed());
        drop(input);
        let sizes = received.await.unwrap();
        assert!(sizes.iter().all(|&n| n == INPUT_CHUNK_BYTES), "{sizes:?}");
        assert_eq!(sizes.len(), 18);
    }
}
