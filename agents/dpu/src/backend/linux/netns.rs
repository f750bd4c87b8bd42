//! Running a piece of work inside a named network namespace (`ip netns add NAME`): on a
//! short-lived thread that entered it, so the agent's own threads never switch namespace.
//! Sockets keep the namespace they were made in, which is all the backend needs: its netlink
//! socket and its sysctl writes are made there once.

use std::fs::File;

use nix::sched::{CloneFlags, setns};

use agent_common::DriverError;

/// Runs `work` in the namespace `netns` (the agent's own when `None`).
pub fn run_in<T: Send>(
    netns: Option<&str>,
    work: impl FnOnce() -> T + Send,
) -> Result<T, DriverError> {
    let Some(name) = netns else {
        return Ok(work());
    };
    let path = format!("/run/netns/{name}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = File::open(&path).map_err(|err| {
                    DriverError::Internal(format!(
                        "cannot open network namespace {path}: {err}; create it (ip netns add \
                         {name}) or fix the backend's netns setting"
                    ))
                })?;
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(|err| {
                    DriverError::Internal(format!(
                        "cannot enter network namespace {name}: {err}; the agent must run as root"
                    ))
                })?;
                Ok(work())
            })
            .join()
            .unwrap_or_else(|_| {
                Err(DriverError::Internal(format!(
                    "the thread entering network namespace {name} panicked"
                )))
            })
    })
}
