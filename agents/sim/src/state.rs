//! The simulated datacenter's state in the data directory: one JSON file per host,
//! `<state_dir>/hosts/<host_id>.json`, holding its [`HostSnapshot`] (VMs, tombstones, active
//! partitions, GPU health). Read when the fleet starts, written when the host changes (at
//! most every [`SAVE_INTERVAL`]) and when the fleet stops. Deleting the directory starts
//! the datacenter afresh.
//!
//! DPU and switch agents are not stored: the control plane does not drive them yet, so
//! nothing it relies on lives there.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use host_agent::{HostSnapshot, SimHost};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use agent_common::lock;

/// How often changed hosts are written; a change is on disk at most this much later.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(200);

/// One host's state file.
pub struct HostStateFile {
    path: PathBuf,
    host: SimHost,
    /// The lock also keeps the saver task and the final save at stop from writing at once.
    saved: Mutex<Saved>,
}

#[derive(Default)]
struct Saved {
    /// What the file holds, so an unchanged host is not written again.
    snapshot: Option<HostSnapshot>,
    /// After the final save: a saver still running must not overwrite what the next fleet
    /// on this directory has meanwhile read.
    closed: bool,
}

impl HostStateFile {
    /// The file of `host` under `state_dir` (whose `hosts` directory must exist).
    pub fn new(state_dir: &Path, host: SimHost) -> Self {
        let path = hosts_dir(state_dir).join(format!("{}.json", host.host_id()));
        HostStateFile { path, host, saved: Mutex::default() }
    }

    /// Restores the host from its file, if it has one. A file that cannot be read or is
    /// refused (corrupt, of another host or topology) is logged and moved aside to
    /// `<host_id>.json.refused`, and the host starts empty; it never stops the fleet.
    pub fn load(&self) {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
            Err(err) => return self.refuse(&format!("it cannot be read: {err}")),
        };
        let snapshot: HostSnapshot = match serde_json::from_str(&text) {
            Ok(snapshot) => snapshot,
            Err(err) => return self.refuse(&format!("it is not a host snapshot: {err}")),
        };
        match self.host.restore(&snapshot) {
            Ok(vms) => {
                info!(host_id = %self.host.host_id(), vms, path = %self.path.display(),
                      "simulated host restored");
                lock(&self.saved).snapshot = Some(snapshot);
            }
            Err(why) => self.refuse(&why),
        }
    }

    fn refuse(&self, why: &str) {
        let aside = self.path.with_extension("json.refused");
        let moved = std::fs::rename(&self.path, &aside);
        warn!(host_id = %self.host.host_id(), path = %self.path.display(), why,
              kept_as = %aside.display(), moved_aside = moved.is_ok(),
              "simulated host state refused; the host starts empty");
    }

    /// Writes the host's state if it changed since the last write; errors are logged (the
    /// next change tries again).
    pub fn save(&self) {
        self.save_locked(&mut lock(&self.saved));
    }

    /// The last save, when the fleet stops; later saves do nothing.
    pub fn close(&self) {
        let mut saved = lock(&self.saved);
        self.save_locked(&mut saved);
        saved.closed = true;
    }

    fn save_locked(&self, saved: &mut Saved) {
        let snapshot = self.host.snapshot();
        if saved.closed || saved.snapshot.as_ref() == Some(&snapshot) {
            return;
        }
        match write_atomically(&self.path, &snapshot) {
            Ok(()) => saved.snapshot = Some(snapshot),
            Err(err) => warn!(host_id = %self.host.host_id(), path = %self.path.display(),
                              %err, "cannot write the simulated host's state"),
        }
    }
}

pub fn hosts_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("hosts")
}

/// Temp file, flush to disk, rename: a crash leaves the old file or the new one, never half.
fn write_atomically(path: &Path, snapshot: &HostSnapshot) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    let temp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&text)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

/// Saves every changed host each [`SAVE_INTERVAL`] until `stop` turns true. Polling the
/// snapshots needs no hook in every place a host changes, and a change is never missed.
pub fn spawn_saver(
    files: Arc<Vec<HostStateFile>>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SAVE_INTERVAL) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
            let files = files.clone();
            // File I/O off the async workers.
            let _ = tokio::task::spawn_blocking(move || files.iter().for_each(HostStateFile::save))
                .await;
        }
    })
}
