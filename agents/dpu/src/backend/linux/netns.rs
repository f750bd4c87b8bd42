//! Running a piece of work inside a named network namespace (`ip netns add NAME`): on a
//! short-lived thread that entered it, so the agent's own threads never switch namespace.
//! Sockets keep the namespace they were made in, which is all the backend needs: its netlink
//! sockets and its sysctl writes are made there. Also the named namespaces of the NAT
//! routers (made and deleted with `ip netns`, which owns `/run/netns`).

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

/// Writes `value` to each `/proc/sys/<key>` (e.g. `net/ipv4/conf/eth0/forwarding`) as seen
/// from the namespace `netns` (the agent's own when `None`).
pub fn sysctl(netns: Option<&str>, keys: &[String], value: &str) -> Result<(), DriverError> {
    run_in(netns, || {
        for key in keys {
            let path = format!("/proc/sys/{key}");
            std::fs::write(&path, value).map_err(|err| {
                DriverError::Internal(format!("cannot write {value} to {path}: {err}"))
            })?;
        }
        Ok(())
    })?
}

/// Whether the named namespace `name` exists (`/run/netns/NAME`).
pub fn exists(name: &str) -> bool {
    std::path::Path::new(NETNS_DIR).join(name).exists()
}

/// The named namespaces, by name.
pub fn list() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

/// Opens the named namespace `name` (for a netlink request that moves a device into it).
pub fn open(name: &str) -> Result<File, DriverError> {
    let path = format!("{NETNS_DIR}/{name}");
    File::open(&path).map_err(|err| {
        DriverError::Internal(format!("cannot open network namespace {path}: {err}"))
    })
}

/// Creates the named namespace `name` unless it exists (`ip netns add`: iproute2 owns the
/// conventions of `/run/netns`, its mount propagation included).
pub async fn add(name: &str) -> Result<(), DriverError> {
    if exists(name) {
        return Ok(());
    }
    // Another caller may have made it meanwhile: then it is there, which is all we want.
    ip_netns(&["add", name]).await.or_else(|err| if exists(name) { Ok(()) } else { Err(err) })
}

/// Deletes the named namespace `name` if it exists; its devices go with it.
pub async fn delete(name: &str) -> Result<(), DriverError> {
    if !exists(name) {
        return Ok(());
    }
    ip_netns(&["delete", name]).await.or_else(|err| if exists(name) { Err(err) } else { Ok(()) })
}

const NETNS_DIR: &str = "/run/netns";

async fn ip_netns(args: &[&str]) -> Result<(), DriverError> {
    let output = tokio::process::Command::new("ip")
        .arg("netns")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|err| DriverError::Internal(format!("cannot run ip: {err}; install iproute2")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(DriverError::Internal(format!(
        "ip netns {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
