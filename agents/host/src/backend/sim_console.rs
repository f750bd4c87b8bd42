//! The simulated guests' serial consoles: what a simulated VM "prints" when it starts,
//! reboots and stops (a boot banner, the hostname and key count its cloud-init drive would
//! give, a prompt), and a line editor that echoes keystrokes, so the portal's console tab
//! works the same against the simulated fleet as against a real guest. Every viewer of a VM
//! sees the same output, typed keys included, as on a real serial line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use agent_common::{DriverError, lock};

use super::libvirt::config_drive;
use crate::console::{self, ConsoleSession, HISTORY_BYTES};
use crate::model::VmSpec;

#[derive(Clone, Default)]
pub struct SimConsoles {
    consoles: Arc<Mutex<BTreeMap<String, SimConsole>>>,
}

struct SimConsole {
    hostname: String,
    history: Vec<u8>,
    live: broadcast::Sender<Vec<u8>>,
}

impl SimConsole {
    fn print(&mut self, text: &str) {
        self.history.extend_from_slice(text.as_bytes());
        let excess = self.history.len().saturating_sub(HISTORY_BYTES);
        self.history.drain(..excess);
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(text.as_bytes().to_vec());
    }

    fn prompt(&self) -> String {
        format!("{}:~$ ", self.hostname)
    }
}

impl SimConsoles {
    /// The guest of `spec` powered on: the console starts over with its boot lines.
    pub fn boot(&self, spec: &VmSpec) {
        let hostname = config_drive::hostname(spec);
        let mut consoles = lock(&self.consoles);
        let console = consoles.entry(spec.vm_id.clone()).or_insert_with(|| SimConsole {
            hostname: hostname.clone(),
            history: Vec::new(),
            live: broadcast::channel(64).0,
        });
        console.hostname = hostname;
        console.history.clear();
        let gpus = spec.gpu_module_ids.len();
        let banner = format!(
            "[sim] {}: powered on (a simulated VM with {gpus} GPU(s); no real guest runs)\r\n\
             [sim] cloud-init: hostname {}, {} ssh keys\r\n{}",
            spec.name,
            console.hostname,
            spec.ssh_authorized_keys.len(),
            console.prompt()
        );
        console.print(&banner);
    }

    /// As [`boot`](Self::boot), unless the console of `spec` already has output.
    pub fn boot_unless_printed(&self, spec: &VmSpec) {
        if !lock(&self.consoles).contains_key(&spec.vm_id) {
            self.boot(spec);
        }
    }

    /// The guest is going down (a stop, a power-off, or the first half of a reboot).
    pub fn power_off(&self, vm_id: &str) {
        if let Some(console) = lock(&self.consoles).get_mut(vm_id) {
            console.print("\r\n[sim] powered off\r\n");
        }
    }

    /// The domain is gone: so is its console.
    pub fn remove(&self, vm_id: &str) {
        lock(&self.consoles).remove(vm_id);
    }

    /// A session on the console of `vm_id`: its history, then live output; typed keys are
    /// echoed to every viewer and Enter answers with a line and a new prompt.
    pub fn open(&self, vm_id: &str) -> Result<ConsoleSession, DriverError> {
        let (session, mut ends) = console::session();
        let (history, mut live) = {
            let consoles = lock(&self.consoles);
            let console = consoles.get(vm_id).ok_or_else(|| {
                DriverError::FailedPrecondition(format!(
                    "VM {vm_id} has not started yet; its console opens once it runs"
                ))
            })?;
            (console.history.clone(), console.live.subscribe())
        };
        let output = ends.output;
        tokio::spawn(async move {
            if !history.is_empty() && output.send(history).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    chunk = live.recv() => match chunk {
                        Ok(chunk) => {
                            if output.send(chunk).await.is_err() {
                                return;
                            }
                        }
                        // A viewer too slow for the guest loses the middle, as on a serial line.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = output.closed() => return,
                }
            }
        });
        let consoles = self.clone();
        let vm_id = vm_id.to_owned();
        tokio::spawn(async move {
            while let Some(keys) = ends.input.recv().await {
                consoles.type_keys(&vm_id, &keys);
            }
        });
        Ok(session)
    }

    fn type_keys(&self, vm_id: &str, keys: &[u8]) {
        let mut consoles = lock(&self.consoles);
        let Some(console) = consoles.get_mut(vm_id) else { return };
        for &key in keys {
            match key {
                b'\r' | b'\n' => {
                    let prompt = console.prompt();
                    console.print(&format!("\r\n[sim] a simulated guest has no shell\r\n{prompt}"));
                }
                // Backspace and delete: rub out the last character on screen.
                0x08 | 0x7f => console.print("\x08 \x08"),
                0x20..=0x7e => console.print(&char::from(key).to_string()),
                _ => {}
            }
        }
    }
}
