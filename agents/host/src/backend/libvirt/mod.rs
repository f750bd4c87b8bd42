//! [`LibvirtBackend`]: the host backend on a real machine. Domains through libvirt (the
//! `virt` crate; its calls block, so each runs in `spawn_blocking`), hardware from sysfs plus
//! the config's [`HostFacts`], partitions through a [`FabricManager`].
//!
//! Modules: [`sysfs`] reads the machine, [`inventory`] joins it with the config,
//! [`pcie_layout`] and [`domain_xml`] render a spec, [`files`] and [`config_drive`] make a
//! VM's disk overlay and NoCloud drive, [`domains`] drives libvirt, [`fabric_manager`] the
//! NVSwitch partitions, [`vf_link`] wires guests' NICs to their DPU ports where there is no
//! SR-IOV.

pub mod config_drive;
pub mod console;
pub mod domain_xml;
pub mod domains;
pub mod fabric_manager;
pub mod files;
pub mod inventory;
pub mod pci;
pub mod pcie_layout;
pub mod sysfs;
pub mod vf_link;

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use virt::connect::Connect;

use agent_common::{DriverError, lock};

pub use domain_xml::{DomainSettings, DomainType};
pub use fabric_manager::{FabricManager, FmpmFabricManager, SimFabricManager};
pub use files::VmFiles;
pub use inventory::HostFacts;

use super::HostBackend;
use crate::console::ConsoleSession;
use crate::model::{HostDescription, Partition, VmSpec};

/// The `[backend.libvirt]` table of the `host-agent` config (see `main.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibvirtConfig {
    /// e.g. `qemu:///system`; `test:///default` is libvirt's in-process test driver.
    pub uri: String,
    pub domain_type: DomainType,
    /// The image store: base images by the file name the catalog gives (`VmSpec::image`),
    /// read-only to the agent.
    pub image_dir: PathBuf,
    /// Per-VM overlays, config drives and console logs.
    pub state_dir: PathBuf,
    #[serde(default = "default_sysfs_root")]
    pub sysfs_root: PathBuf,
    /// Back CPU-only VMs with 1 GiB hugepages (GPU VMs always are).
    #[serde(default)]
    pub cpu_only_hugepages: bool,
    /// The Fabric Manager partition tool and its leading arguments, e.g. `["fmpm"]`;
    /// absent: partitions are simulated in memory (hosts without NVSwitch, tests).
    pub fm_tool: Option<Vec<String>>,
    /// How long a guest has to shut down on ACPI before it is powered off.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
    /// A started domain is reported running once its guest prints on the serial console
    /// (the kernel is up), or after this long if it prints nothing (a guest without a serial
    /// console).
    #[serde(default = "default_boot_wait")]
    pub boot_wait_secs: u64,
    /// A CPU-only host without 1 GiB hugepages (a build machine, a laptop): the ordinary
    /// memory per NUMA node its VMs may use, in GiB. It is offered and accounted in the same
    /// 1 GiB units as hugepages. Refused on a host with GPUs or with `cpu_only_hugepages`.
    pub guest_memory_gib: Option<u32>,
    /// The network namespace of this host's DPU when it runs the DPU agent's `linux` backend
    /// (VF stand-ins instead of SR-IOV): each guest gets a virtio NIC per tenant port, wired
    /// to the port's VF stand-in there ([`vf_link`]). Absent: no tenant NICs are rendered.
    pub vf_netns: Option<String>,
    pub host: HostFacts,
}

fn default_sysfs_root() -> PathBuf {
    PathBuf::from("/sys")
}

fn default_shutdown_timeout() -> u64 {
    30
}

fn default_boot_wait() -> u64 {
    60
}

pub struct LibvirtBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: LibvirtConfig,
    /// Read at start: what specs are rendered against.
    description: HostDescription,
    settings: DomainSettings,
    fabric: Box<dyn FabricManager>,
    /// Opened on first use and again after libvirt went away.
    conn: Mutex<Option<Arc<Connect>>>,
}

impl LibvirtBackend {
    /// Reads the hardware and opens the connection (blocking). Errors say what to fix.
    pub fn open(config: LibvirtConfig) -> Result<Self, DriverError> {
        let fabric: Box<dyn FabricManager> = match &config.fm_tool {
            Some(command) => Box::new(FmpmFabricManager::new(command.clone())?),
            None => Box::new(SimFabricManager::default()),
        };
        Self::with_fabric_manager(config, fabric)
    }

    /// As [`open`](Self::open), with the given Fabric Manager.
    pub fn with_fabric_manager(
        config: LibvirtConfig,
        fabric: Box<dyn FabricManager>,
    ) -> Result<Self, DriverError> {
        if !config.image_dir.is_dir() {
            return Err(DriverError::InvalidArgument(format!(
                "image_dir {} is not a directory; create the image store or fix the path",
                config.image_dir.display()
            )));
        }
        let description = read_hardware(&config)?;
        let settings = DomainSettings {
            domain_type: config.domain_type,
            cpu_only_hugepages: config.cpu_only_hugepages,
            tap_nics: config.vf_netns.is_some(),
        };
        let inner = Inner { config, description, settings, fabric, conn: Mutex::new(None) };
        inner.connection()?;
        Ok(LibvirtBackend { inner: Arc::new(inner) })
    }

    /// The hardware as read at start.
    pub fn description(&self) -> &HostDescription {
        &self.inner.description
    }

    /// Runs `f` on a blocking thread with the backend.
    async fn blocking<T, F>(&self, f: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, DriverError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await.map_err(|e| {
            DriverError::Internal(format!("a libvirt backend operation panicked: {e}"))
        })?
    }
}

impl Inner {
    fn connection(&self) -> Result<Arc<Connect>, DriverError> {
        let mut conn = lock(&self.conn);
        if let Some(conn) = conn.as_ref() {
            return Ok(conn.clone());
        }
        // libvirt's default handler prints every error to stderr, including the "domain not
        // found" our idempotent lookups expect; errors are returned and mapped instead.
        static QUIET: std::sync::Once = std::sync::Once::new();
        QUIET.call_once(virt::error::clear_error_callback);
        let opened = Connect::open(Some(&self.config.uri)).map_err(|e| {
            DriverError::Unavailable(format!(
                "cannot connect to libvirt at {}: {}; is libvirtd running?",
                self.config.uri,
                e.message()
            ))
        })?;
        let opened = Arc::new(opened);
        *conn = Some(opened.clone());
        Ok(opened)
    }

    /// Runs a domain operation; a lost connection is dropped so the next call reconnects.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connect) -> Result<T, DriverError>,
    ) -> Result<T, DriverError> {
        let conn = self.connection()?;
        let result = f(&conn);
        if matches!(result, Err(DriverError::Unavailable(_))) {
            lock(&self.conn).take();
        }
        result
    }

    fn files(&self, vm_id: &str) -> VmFiles {
        VmFiles::new(&self.config.state_dir, vm_id)
    }

    /// Waits until the guest of the just-started domain printed a whole line on its console
    /// (its log is started over at each start), at most `boot_wait_secs`. A whole line, not a
    /// byte: the emulated serial port writes one character at a time.
    fn wait_for_guest(&self, vm_id: &str) {
        let log = self.files(vm_id).console_log;
        let deadline = Instant::now() + Duration::from_secs(self.config.boot_wait_secs);
        let printed_a_line = || -> std::io::Result<bool> {
            let mut head = Vec::new();
            std::fs::File::open(&log)?.take(64 * 1024).read_to_end(&mut head)?;
            Ok(head.contains(&b'\n'))
        };
        while Instant::now() < deadline {
            if printed_a_line().unwrap_or(false) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::info!(vm_id, log = %log.display(), "the guest printed nothing on its console; reporting it running anyway");
    }

    fn known(&self, partition: &Partition) -> Result<(), DriverError> {
        if self.description.partition(partition.id).is_some() {
            return Ok(());
        }
        Err(DriverError::Internal(format!(
            "the partition table has no partition {}; the manager asked for one outside it",
            partition.id
        )))
    }
}

fn read_hardware(config: &LibvirtConfig) -> Result<HostDescription, DriverError> {
    let sysfs = sysfs::read(&config.sysfs_root)?;
    let mut host = inventory::describe(&sysfs, &config.host)?;
    if let Some(gib) = config.guest_memory_gib {
        if !host.gpus.is_empty() || config.cpu_only_hugepages {
            return Err(DriverError::InvalidArgument(
                "guest_memory_gib is for CPU-only hosts whose VMs use ordinary memory; remove it \
                 (this host has GPUs or cpu_only_hugepages = true: VMs use hugepages)"
                    .into(),
            ));
        }
        for node in &mut host.numa_nodes {
            node.hugepages_1g_total = gib.min((node.memory_mib / 1024) as u32);
        }
    }
    Ok(host)
}

#[async_trait]
impl HostBackend for LibvirtBackend {
    async fn hardware(&self) -> Result<HostDescription, DriverError> {
        // Re-read: hugepage reservations can change while the agent runs.
        self.blocking(|inner| read_hardware(&inner.config)).await
    }

    async fn images(&self) -> Result<Option<Vec<String>>, DriverError> {
        self.blocking(|inner| files::images(&inner.config.image_dir).map(Some)).await
    }

    async fn partition_activate(&self, partition: &Partition) -> Result<(), DriverError> {
        let partition = partition.clone();
        self.blocking(move |inner| {
            inner.known(&partition)?;
            inner.fabric.activate(partition.id)
        })
        .await
    }

    async fn partition_deactivate(&self, partition: &Partition) -> Result<(), DriverError> {
        let partition = partition.clone();
        self.blocking(move |inner| {
            inner.known(&partition)?;
            inner.fabric.deactivate(partition.id)
        })
        .await
    }

    async fn domain_define(&self, spec: &VmSpec) -> Result<(), DriverError> {
        let spec = spec.clone();
        self.blocking(move |inner| {
            let files = inner.files(&spec.vm_id);
            // Render first: a spec that does not fit leaves no files behind.
            let xml = domain_xml::render(&spec, &inner.description, &inner.settings, &files)?;
            files.create(&spec, &inner.config.image_dir)?;
            inner.with_conn(|conn| domains::define(conn, &spec.vm_id, &xml))
        })
        .await
    }

    async fn domain_start(&self, vm_id: &str) -> Result<(), DriverError> {
        let vm_id = vm_id.to_owned();
        self.blocking(move |inner| {
            inner.with_conn(|conn| domains::start(conn, &vm_id))?;
            if let Some(netns) = &inner.config.vf_netns {
                let taps = vf_link::taps_in(&inner.with_conn(|conn| domains::xml(conn, &vm_id))?);
                if let Err(e) = vf_link::connect(netns, &taps) {
                    // A guest without its network is not started: the next start wires again.
                    let _ = inner.with_conn(|conn| domains::power_off(conn, &vm_id));
                    return Err(e);
                }
            }
            inner.wait_for_guest(&vm_id);
            Ok(())
        })
        .await
    }

    async fn domain_stop(&self, vm_id: &str) -> Result<(), DriverError> {
        let vm_id = vm_id.to_owned();
        self.blocking(move |inner| {
            let timeout = Duration::from_secs(inner.config.shutdown_timeout_secs);
            inner.with_conn(|conn| domains::stop(conn, &vm_id, timeout))
        })
        .await
    }

    async fn domain_reboot(&self, vm_id: &str) -> Result<(), DriverError> {
        let vm_id = vm_id.to_owned();
        self.blocking(move |inner| inner.with_conn(|conn| domains::reboot(conn, &vm_id))).await
    }

    async fn domain_power_off(&self, vm_id: &str) -> Result<(), DriverError> {
        let vm_id = vm_id.to_owned();
        self.blocking(move |inner| inner.with_conn(|conn| domains::power_off(conn, &vm_id))).await
    }

    async fn domain_undefine(&self, vm_id: &str) -> Result<(), DriverError> {
        let vm_id = vm_id.to_owned();
        self.blocking(move |inner| {
            inner.with_conn(|conn| domains::undefine(conn, &vm_id))?;
            // Also when the domain was already gone: a retry after a failed removal.
            inner.files(&vm_id).remove()
        })
        .await
    }

    async fn console(&self, vm_id: &str) -> Result<ConsoleSession, DriverError> {
        let vm_id = vm_id.to_owned();
        self.blocking(move |inner| {
            console::open(&inner.config.uri, &vm_id, inner.files(&vm_id).console_log)
        })
        .await
    }
}

impl LibvirtBackend {
    /// Whether domain `vm_id` is defined (`Some`) and running (`Some(true)`).
    pub async fn domain_running(&self, vm_id: &str) -> Result<Option<bool>, DriverError> {
        let vm_id = vm_id.to_owned();
        self.blocking(move |inner| inner.with_conn(|conn| domains::is_running(conn, &vm_id))).await
    }

    /// The active Fabric Manager partitions.
    pub async fn active_partitions(&self) -> Result<std::collections::BTreeSet<u32>, DriverError> {
        self.blocking(|inner| inner.fabric.active_partitions()).await
    }
}
