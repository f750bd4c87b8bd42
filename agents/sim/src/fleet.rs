//! [`SimFleet`]: starts one simulated agent per host, DPU and leaf switch of a topology, each
//! on its own loopback port in this process and runtime, serving only mutual TLS with its own
//! certificate from a PKI directory, and hands out in-process handles for fault injection
//! and health changes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_proto::{AgentEndpoint, AgentKind, AgentList};
use dpu_agent::{DpuAgentService, SimDpu, SimDpuOptions};
use host_agent::{
    HostAgentService, HostManager, HostOptions, LibvirtBackend, LibvirtConfig, SimHost,
};
use switch_agent::{SimSwitch, SimSwitchOptions, SwitchAgentService};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use agent_common::error::error_chain;
use agent_common::hash::stable_hash;
use agent_common::tls::{AgentCredentials, AgentName, PkiDir, TlsError};

use crate::serve::serve_on_loopback;
use crate::state::{HostStateFile, hosts_dir, spawn_saver};
use crate::topology::Topology;

/// How the simulated devices behave in time.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// How long a new VM stays PROVISIONING (long enough by default for a person to see it).
    pub provision_delay: Duration,
    /// How long a removed VM stays STOPPING.
    pub remove_delay: Duration,
    /// Up to this fraction of a VM delay is added, deterministically per VM (0..=1).
    pub jitter: f64,
    /// How long a DPU port or switch VPC change takes.
    pub network_apply_delay: Duration,
    /// Seeds the jitter of every host (each host mixes in its id).
    pub seed: u64,
    /// How many events a watcher may fall behind before it gets a fresh snapshot.
    pub event_capacity: usize,
    /// Where the hosts keep their state across restarts (see [`crate::state`]); `None`:
    /// in memory only, every start is a new datacenter.
    pub state_dir: Option<PathBuf>,
    /// A real host beside the simulated ones: this machine, its VMs real guests under
    /// libvirt (see `host_agent::LibvirtConfig`), served like the others.
    pub real_host: Option<LibvirtConfig>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            provision_delay: Duration::from_millis(1500),
            remove_delay: Duration::from_millis(500),
            jitter: 0.1,
            network_apply_delay: Duration::from_millis(5),
            seed: 0,
            event_capacity: 1024,
            state_dir: None,
            real_host: None,
        }
    }
}

/// Why the fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(
        "cannot open a loopback port for {kind} agent {id}: {source}; raise the open-file \
         limit (ulimit -n) or simulate fewer devices"
    )]
    Bind {
        kind: AgentKind,
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare the simulated agents' certificates: {0}")]
    Pki(#[from] TlsError),
    #[error("cannot serve mutual TLS for {kind} agent {id}: {detail}; recreate its certificate")]
    Tls { kind: AgentKind, id: String, detail: String },
    #[error(
        "cannot create the simulated datacenter's state directory {dir}: {source}; make it \
         writable or choose another data directory"
    )]
    State {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the real host {id} cannot start: {detail}")]
    RealHost { id: String, detail: String },
}

/// A running simulated fleet. Dropping it stops the servers too, without waiting;
/// [`shutdown`](Self::shutdown) waits for them.
pub struct SimFleet {
    pki: PkiDir,
    endpoints: Vec<AgentEndpoint>,
    hosts: BTreeMap<String, SimHost>,
    real_host: Option<HostManager>,
    dpus: BTreeMap<String, SimDpu>,
    switches: BTreeMap<String, SimSwitch>,
    /// The hosts' state files, when the fleet keeps its state.
    state: Option<Arc<Vec<HostStateFile>>>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

fn tls_error(kind: AgentKind, id: &str, e: &tonic::transport::Error) -> FleetError {
    FleetError::Tls { kind, id: id.to_owned(), detail: error_chain(e) }
}

/// How long shutdown waits for servers to close their connections before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl SimFleet {
    /// Starts every agent of `topology` and returns once all listen. First makes sure `pki`
    /// holds a CA, the control plane's certificate and one certificate per agent (keeping
    /// what exists; see [`PkiDir::ensure`]); each agent then serves only mutual TLS with its
    /// own certificate. On a bind failure the agents already started are stopped again.
    pub async fn start(
        topology: &Topology,
        options: SimOptions,
        pki: &PkiDir,
    ) -> Result<SimFleet, FleetError> {
        let started = std::time::Instant::now();
        let plan = topology.plan();
        let names: Vec<(AgentKind, String)> = plan
            .hosts
            .iter()
            .map(|h| (AgentKind::Host, h.host_id.clone()))
            .chain(options.real_host.iter().map(|c| (AgentKind::Host, c.host.host_id.clone())))
            .chain(plan.dpus.iter().map(|d| (AgentKind::Dpu, d.dpu_id.clone())))
            .chain(plan.switches.iter().map(|s| (AgentKind::Switch, s.switch_id.clone())))
            .collect();
        let names: Vec<AgentName<'_>> =
            names.iter().map(|(kind, id)| AgentName { kind: kind.label(), id }).collect();
        // A key per agent: issuing the 209 certificates of the default fleet takes under
        // 0.2 s even in a debug build, so sharing one key would buy nothing worth its risk.
        let ensured = pki.ensure(&names, false)?;
        info!(
            dir = %pki.root().display(),
            ca_created = ensured.ca_created,
            issued = ensured.issued,
            kept = ensured.kept,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "agent certificates ready"
        );
        let (stop, _) = watch::channel(false);
        let mut fleet = SimFleet {
            pki: pki.clone(),
            endpoints: Vec::with_capacity(plan.hosts.len() + plan.dpus.len() + plan.switches.len()),
            hosts: BTreeMap::new(),
            real_host: None,
            dpus: BTreeMap::new(),
            switches: BTreeMap::new(),
            state: None,
            stop,
            servers: Vec::new(),
        };

        let state_dir = options.state_dir.as_deref();
        if let Some(dir) = state_dir {
            let hosts = hosts_dir(dir);
            std::fs::create_dir_all(&hosts)
                .map_err(|source| FleetError::State { dir: hosts, source })?;
        }
        let mut state_files = Vec::new();
        for description in plan.hosts {
            let id = description.host_id.clone();
            let host = SimHost::new(
                description,
                HostOptions {
                    provision_delay: options.provision_delay,
                    remove_delay: options.remove_delay,
                    jitter: options.jitter,
                    seed: stable_hash(&[&options.seed.to_le_bytes(), id.as_bytes()]),
                    event_capacity: options.event_capacity,
                },
            );
            // Restored before it serves, so the control plane never sees it empty.
            if let Some(dir) = state_dir {
                let file = HostStateFile::new(dir, host.clone());
                file.load();
                state_files.push(file);
            }
            let credentials = fleet.credentials(AgentKind::Host, &id)?;
            let router = HostAgentService::new(host.manager().clone())
                .into_router(&credentials)
                .map_err(|e| tls_error(AgentKind::Host, &id, &e))?;
            fleet.serve(AgentKind::Host, &id, router).await?;
            fleet.hosts.insert(id, host);
        }
        if state_dir.is_some() {
            let files = Arc::new(state_files);
            fleet.servers.push(spawn_saver(files.clone(), fleet.stop.subscribe()));
            fleet.state = Some(files);
        }
        if let Some(config) = options.real_host.clone() {
            fleet.start_real_host(config).await?;
        }
        for description in plan.dpus {
            let id = description.dpu_id.clone();
            let dpu = SimDpu::new(
                description,
                SimDpuOptions {
                    apply_delay: options.network_apply_delay,
                    event_capacity: options.event_capacity,
                },
            );
            let credentials = fleet.credentials(AgentKind::Dpu, &id)?;
            let router = DpuAgentService::new(dpu.manager().clone())
                .into_router(&credentials)
                .map_err(|e| tls_error(AgentKind::Dpu, &id, &e))?;
            fleet.serve(AgentKind::Dpu, &id, router).await?;
            fleet.dpus.insert(id, dpu);
        }
        for description in plan.switches {
            let id = description.switch_id.clone();
            let switch = SimSwitch::new(
                description,
                SimSwitchOptions {
                    apply_delay: options.network_apply_delay,
                    event_capacity: options.event_capacity,
                },
            );
            let credentials = fleet.credentials(AgentKind::Switch, &id)?;
            let router = SwitchAgentService::new(switch.manager().clone())
                .into_router(&credentials)
                .map_err(|e| tls_error(AgentKind::Switch, &id, &e))?;
            fleet.serve(AgentKind::Switch, &id, router).await?;
            fleet.switches.insert(id, switch);
        }

        info!(
            hosts = fleet.hosts.len(),
            dpus = fleet.dpus.len(),
            switches = fleet.switches.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "simulated fleet started"
        );
        Ok(fleet)
    }

    /// Serves a host agent over the libvirt backend, with no simulated delays: the real
    /// operations take their own time.
    async fn start_real_host(&mut self, config: LibvirtConfig) -> Result<(), FleetError> {
        let id = config.host.host_id.clone();
        let real_host_error = |detail: String| FleetError::RealHost { id: id.clone(), detail };
        let backend = tokio::task::spawn_blocking(move || LibvirtBackend::open(config))
            .await
            .map_err(|e| real_host_error(e.to_string()))?
            .map_err(|e| real_host_error(e.to_string()))?;
        let options = HostOptions::real_hardware();
        let manager = HostManager::new(backend.description().clone(), Arc::new(backend), options);
        let credentials = self.credentials(AgentKind::Host, &id)?;
        let router = HostAgentService::new(manager.clone())
            .into_router(&credentials)
            .map_err(|e| tls_error(AgentKind::Host, &id, &e))?;
        self.serve(AgentKind::Host, &id, router).await?;
        info!(host_id = %id, "real host started beside the simulated fleet");
        self.real_host = Some(manager);
        Ok(())
    }

    fn credentials(&self, kind: AgentKind, id: &str) -> Result<AgentCredentials, FleetError> {
        Ok(self.pki.agent(AgentName { kind: kind.label(), id })?)
    }

    async fn serve(
        &mut self,
        kind: AgentKind,
        id: &str,
        router: tonic::transport::server::Router,
    ) -> Result<(), FleetError> {
        // On error `self` is dropped by the caller's `?`, which stops what already runs.
        let server = serve_on_loopback(router, self.stop.subscribe())
            .await
            .map_err(|source| FleetError::Bind { kind, id: id.to_owned(), source })?;
        self.endpoints.push(AgentEndpoint {
            kind,
            id: id.to_owned(),
            url: format!("https://{}", server.addr),
        });
        self.servers.push(server.task);
        Ok(())
    }

    /// The directory with the CA, the agents' and the control plane's certificates.
    pub fn pki(&self) -> &PkiDir {
        &self.pki
    }

    /// Every agent's endpoint: hosts, then DPUs, then switches, each in topology order.
    pub fn endpoints(&self) -> &[AgentEndpoint] {
        &self.endpoints
    }

    /// The endpoints as the agents file the portal reads.
    pub fn agent_list(&self) -> AgentList {
        AgentList { agents: self.endpoints.clone() }
    }

    /// The endpoint of the agent with this id (host, DPU or switch).
    pub fn endpoint(&self, id: &str) -> Option<&AgentEndpoint> {
        self.endpoints.iter().find(|e| e.id == id)
    }

    /// A channel to agent `id` as the control plane dials it: mutual TLS with the control
    /// plane's certificate from this fleet's PKI directory, expecting the agent's own name.
    pub async fn control_plane_channel(&self, id: &str) -> Result<Channel, String> {
        let endpoint = self.endpoint(id).ok_or_else(|| format!("no agent {id} in this fleet"))?;
        let tls = self
            .pki
            .control_plane()
            .and_then(|c| c.client_config(endpoint.kind.label(), id))
            .map_err(|e| e.to_string())?;
        Endpoint::from_shared(endpoint.url.clone())
            .and_then(|e| e.tls_config(tls))
            .map_err(|e| error_chain(&e))?
            .connect()
            .await
            .map_err(|e| error_chain(&e))
    }

    /// The in-process handle of host `id` (e.g. `su1-h07`).
    pub fn host(&self, id: &str) -> Option<&SimHost> {
        self.hosts.get(id)
    }

    /// The in-process handle of DPU `id` (e.g. `su1-h07-dpu0`).
    pub fn dpu(&self, id: &str) -> Option<&SimDpu> {
        self.dpus.get(id)
    }

    /// The in-process handle of switch `id` (e.g. `su1-leaf3`).
    pub fn switch(&self, id: &str) -> Option<&SimSwitch> {
        self.switches.get(id)
    }

    pub fn hosts(&self) -> impl Iterator<Item = &SimHost> {
        self.hosts.values()
    }

    pub fn dpus(&self) -> impl Iterator<Item = &SimDpu> {
        self.dpus.values()
    }

    pub fn switches(&self) -> impl Iterator<Item = &SimSwitch> {
        self.switches.values()
    }

    /// Ends watch streams, stops every server and waits (up to a grace period, then aborts)
    /// for their connections to close.
    pub async fn shutdown(mut self) {
        self.signal_stop();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let mut aborted = 0;
        for server in std::mem::take(&mut self.servers) {
            let abort = server.abort_handle();
            if tokio::time::timeout_at(deadline, server).await.is_err() {
                abort.abort();
                aborted += 1;
            }
        }
        if aborted > 0 {
            warn!(aborted, "agent servers did not stop within the grace period; aborted them");
        }
        info!("simulated fleet stopped");
    }

    fn signal_stop(&self) {
        for host in self.hosts.values() {
            host.shutdown();
        }
        if let Some(host) = &self.real_host {
            host.shutdown();
        }
        // The last changes, also when the fleet is dropped without `shutdown`.
        for file in self.state.iter().flat_map(|files| files.iter()) {
            file.close();
        }
        for dpu in self.dpus.values() {
            dpu.shutdown();
        }
        for switch in self.switches.values() {
            switch.shutdown();
        }
        // An error only means no server is listening for the signal any more.
        let _ = self.stop.send(true);
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        self.signal_stop();
    }
}
