//! [`FrrSwitchBackend`]: a leaf running FRR. A tenant VPC is a VRF with its L3 VNI (EVPN
//! type-5 routes for its subnets) and per segment an L2 VNI (type-2/3), over the underlay
//! BGP instance's `advertise-all-vni`.
//!
//! Each change reads what exists (FRR's running configuration, the kernel's devices),
//! applies only the difference, then reads back to check it took: applying the same VPC
//! twice runs nothing, changing segments touches only those, removing an absent VRF does
//! nothing. FRR is configured before the kernel devices appear, and a new VRF's devices
//! are created only once zebra has activated the VRF (a namespace takes it about a second
//! to notice; devices made meanwhile go unseen), so zebra binds each VXLAN device to its VRF
//! as it is created; the apply ends when zebra shows every VNI bound (devices it still
//! missed are made again, once).
//!
//! A segment's access ports (a GPU fabric rail's host NICs, by their front-panel port) join
//! its bridge: with namespace VRFs they move into the VRF's namespace first and back to the
//! switch's when they leave it (see [`linux`]). A port the switch has no interface for, or
//! one another VRF holds, is refused before anything changes.
//!
//! A freshly started zebra holds VXLAN devices protodown for its EVPN multihoming startup
//! delay (`evpn mh startup-delay`, 180 s by default): a switch that just booted advertises
//! its tenants only after that.
//!
//! Modules: [`render`] (FRR configuration and its difference), [`linux`] (kernel devices,
//! [`VrfMode`]), [`apply`] (running `ip` and `vtysh` with a timeout), [`status`] (BGP and
//! EVPN state read back).

pub mod apply;
pub mod linux;
pub mod render;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_common::DriverError;
use async_trait::async_trait;
use serde::Deserialize;
use tracing::info;

use self::apply::{Runner, Vtysh};
pub use self::linux::VrfMode;
use self::linux::{KernelVrf, TenantDevices};
use self::render::{Block, TenantFrr};
use self::status::{EvpnStatus, RemoteRoute};
use super::SwitchBackend;
use crate::model::{SwitchDescription, VpcSpec};

/// The `[backend.frr]` table of the `switch-agent` config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrrSettings {
    /// `kernel` (VRF devices, a real switch) or `netns` (a namespace per VRF).
    pub vrf_mode: VrfMode,
    /// The FRR daemons' pathspace (`vtysh -N`), if they are not the default instance.
    #[serde(default)]
    pub pathspace: Option<String>,
    #[serde(default = "default_vtysh")]
    pub vtysh: PathBuf,
    /// A command every `ip` and `vtysh` runs through, e.g. `["nsenter", "-t", "PID", "-m",
    /// "-n"]` to reach daemons in their own namespaces; empty on a switch.
    #[serde(default)]
    pub command_wrapper: Vec<String>,
    /// How long one command may take before the switch counts as busy.
    #[serde(default = "default_timeout_ms")]
    pub command_timeout_ms: u64,
    /// The switch's static facts; `loopback_ip` is the VTEP and `asn` the BGP instance's.
    pub switch: SwitchDescription,
}

fn default_vtysh() -> PathBuf {
    PathBuf::from("/usr/bin/vtysh")
}

fn default_timeout_ms() -> u64 {
    15_000
}

/// How long zebra may take to activate a new VRF or bind a new VXLAN device.
const ZEBRA_NOTICE: Duration = Duration::from_secs(10);

/// What one apply or remove changed: vtysh configuration lines and `ip` commands, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub frr: Vec<String>,
    pub kernel: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.frr.is_empty() && self.kernel.is_empty()
    }
}

pub struct FrrSwitchBackend {
    description: SwitchDescription,
    mode: VrfMode,
    runner: Runner,
    vtysh: Vtysh,
    /// One change at a time: each reads the state it then changes.
    changing: tokio::sync::Mutex<()>,
}

impl FrrSwitchBackend {
    pub fn new(settings: FrrSettings) -> Self {
        let runner = Runner {
            wrapper: settings.command_wrapper,
            timeout: Duration::from_millis(settings.command_timeout_ms),
        };
        let vtysh = Vtysh {
            runner: runner.clone(),
            program: settings.vtysh,
            pathspace: settings.pathspace,
        };
        FrrSwitchBackend {
            description: settings.switch,
            mode: settings.vrf_mode,
            runner,
            vtysh,
            changing: tokio::sync::Mutex::new(()),
        }
    }

    async fn running(&self) -> Result<Vec<Block>, DriverError> {
        Ok(render::parse_running(&self.vtysh.show("show running-config").await?))
    }

    async fn run_all(&self, plan: &[Vec<String>]) -> Result<(), DriverError> {
        for command in plan {
            self.runner.run(command).await?;
        }
        Ok(())
    }

    async fn configure(&self, lines: &[String]) -> Result<(), DriverError> {
        if lines.is_empty() { Ok(()) } else { self.vtysh.configure(lines).await }
    }

    /// Configures `spec`'s VRF, changing only what differs; returns what it changed.
    pub async fn apply_vpc(&self, spec: &VpcSpec) -> Result<Changes, DriverError> {
        let _one = self.changing.lock().await;
        let want = self.devices(spec);
        let vrf = spec.vrf_name.as_str();
        let claimed: BTreeSet<u32> = want.vnis.keys().copied().collect();
        let ports: BTreeSet<String> = want.ports.keys().cloned().collect();
        if !ports.is_empty() {
            let have = self.mode.read(&self.runner, vrf, &claimed, &ports).await?;
            self.mode.check_ports(&self.runner, &want, &have).await?;
        }

        let frr = TenantFrr {
            vrf: &spec.vrf_name,
            l3_vni: spec.l3_vni,
            asn: self.description.asn,
            router_id: &self.description.loopback_ip,
        };
        let lines = frr.apply_lines(&self.running().await?);
        self.configure(&lines).await?;
        if !frr.apply_lines(&self.running().await?).is_empty() {
            return Err(DriverError::Internal(format!(
                "FRR accepted VRF {}'s configuration but does not show it; look at `show \
                 running-config`",
                spec.vrf_name
            )));
        }

        let mut have = self.mode.read(&self.runner, vrf, &claimed, &ports).await?;
        let mut plan = Vec::new();
        if !have.exists {
            plan = self.mode.create_vrf(vrf, spec.l3_vni);
            self.run_all(&plan).await?;
            have = self.mode.read(&self.runner, vrf, &claimed, &ports).await?;
        }
        self.wait_vrf_active(vrf).await?;
        let rest = self.mode.apply_plan(&want, &have);
        self.run_all(&rest).await?;
        plan.extend(rest);
        let now = self.mode.read(&self.runner, vrf, &claimed, &ports).await?;
        if !now.is(&want) {
            return Err(DriverError::Internal(format!(
                "VRF {vrf}'s kernel devices differ from the wanted ones after applying: {now:?}"
            )));
        }

        // Devices zebra missed (made while it was still opening the VRF's namespace, by an
        // earlier apply) are made again, once.
        let missed = self.wait_bound(vrf, &claimed).await?;
        if !missed.is_empty() {
            let rebuild = self.mode.rebuild_plan(&want, &now, &missed);
            self.run_all(&rebuild).await?;
            plan.extend(rebuild);
            let still = self.wait_bound(vrf, &claimed).await?;
            if !still.is_empty() {
                return Err(DriverError::Internal(format!(
                    "zebra has not bound VNIs {still:?} to VRF {vrf} within {ZEBRA_NOTICE:?}, \
                     even after their devices were made again; look at its log"
                )));
            }
        }
        Ok(changes(lines, &plan))
    }

    /// Configures `lines`, retrying for at most [`ZEBRA_NOTICE`] while bgpd has not yet
    /// heard from zebra that an L3 VNI was unbound.
    async fn configure_once_unbound(&self, lines: &[String]) -> Result<(), DriverError> {
        let start = Instant::now();
        loop {
            match self.configure(lines).await {
                Err(DriverError::Internal(reason))
                    if reason.contains("unconfigure l3vni") && start.elapsed() < ZEBRA_NOTICE =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                done => return done,
            }
        }
    }

    /// Waits for at most [`ZEBRA_NOTICE`] until zebra has activated VRF `vrf` (and so
    /// follows the devices made in it).
    async fn wait_vrf_active(&self, vrf: &str) -> Result<(), DriverError> {
        let start = Instant::now();
        while !status::vrf_active(&self.vtysh.show("show vrf").await?, vrf) {
            if start.elapsed() > ZEBRA_NOTICE {
                return Err(DriverError::Internal(format!(
                    "zebra has not activated VRF {vrf} within {ZEBRA_NOTICE:?}; look at its log"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Waits for at most [`ZEBRA_NOTICE`] until zebra has bound each of `vnis` to VRF `vrf`
    /// with its `vxlanN` device; returns those it has not.
    async fn wait_bound(
        &self,
        vrf: &str,
        vnis: &BTreeSet<u32>,
    ) -> Result<BTreeSet<u32>, DriverError> {
        let start = Instant::now();
        loop {
            let known = status::parse_vnis(&self.vtysh.show("show evpn vni json").await?)?;
            let unbound: BTreeSet<u32> = vnis
                .iter()
                .copied()
                .filter(|n| {
                    let device = format!("vxlan{n}");
                    !known.iter().any(|v| {
                        v.vni == *n && v.vrf == vrf && v.vxlan_if.as_ref() == Some(&device)
                    })
                })
                .collect();
            if unbound.is_empty() || start.elapsed() > ZEBRA_NOTICE {
                return Ok(unbound);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Removes VRF `vrf` from FRR and the kernel, its access ports released first (back to
    /// the switch's namespace); returns what it changed (nothing when absent).
    pub async fn remove_vrf(&self, vrf: &str) -> Result<Changes, DriverError> {
        let _one = self.changing.lock().await;
        let running = self.running().await?;
        let mut lines = render::unbind_lines(&running, vrf);
        self.configure(&lines).await?;
        let delete = render::bgp_delete_lines(&running, vrf);
        self.configure_once_unbound(&delete).await?;
        lines.extend(delete);
        let (no_vnis, no_ports) = (BTreeSet::new(), BTreeSet::new());
        let have = self.mode.read(&self.runner, vrf, &no_vnis, &no_ports).await?;
        let plan = self.mode.remove_plan(vrf, &have);
        self.run_all(&plan).await?;
        let forget = render::forget_lines(&self.running().await?, vrf);
        self.configure(&forget).await?;
        lines.extend(forget);
        if self.mode.read(&self.runner, vrf, &no_vnis, &no_ports).await? != KernelVrf::default() {
            return Err(DriverError::Internal(format!(
                "VRF {vrf} is still in the kernel after removing it"
            )));
        }
        Ok(changes(lines, &plan))
    }

    fn devices(&self, spec: &VpcSpec) -> TenantDevices {
        let mut vnis: BTreeMap<u32, Option<String>> =
            spec.segments.iter().map(|s| (s.l2_vni, linux::gateway(&s.cidr))).collect();
        vnis.insert(spec.l3_vni, None);
        let ports = spec
            .segments
            .iter()
            .flat_map(|s| s.access_ports.iter().map(|p| (p.clone(), s.l2_vni)))
            .collect();
        TenantDevices {
            vrf: spec.vrf_name.clone(),
            l3_vni: spec.l3_vni,
            vtep: self.description.loopback_ip.clone(),
            vnis,
            ports,
        }
    }

    /// The underlay's EVPN peers and every VNI zebra knows, with its VRF and remote VTEPs.
    pub async fn evpn_status(&self) -> Result<EvpnStatus, DriverError> {
        let peers = self.vtysh.show("show bgp l2vpn evpn summary json").await?;
        let vnis = self.vtysh.show("show evpn vni json").await?;
        Ok(EvpnStatus {
            peers: status::parse_peers(&peers)?,
            vnis: status::parse_vnis(&vnis)?,
            simulated: false,
        })
    }

    /// The IPv4 and IPv6 routes VRF `vrf` learned from other leaves (EVPN type-5).
    pub async fn remote_routes(&self, vrf: &str) -> Result<Vec<RemoteRoute>, DriverError> {
        let mut routes = Vec::new();
        for family in ["ipv4", "ipv6"] {
            let json =
                self.vtysh.show(&format!("show bgp vrf {vrf} {family} unicast json")).await?;
            routes.extend(status::parse_remote_routes(&json)?);
        }
        Ok(routes)
    }
}

fn changes(frr: Vec<String>, plan: &[Vec<String>]) -> Changes {
    Changes { frr, kernel: plan.iter().map(|c| c.join(" ")).collect() }
}

#[async_trait]
impl SwitchBackend for FrrSwitchBackend {
    async fn hardware(&self) -> Result<SwitchDescription, DriverError> {
        Ok(self.description.clone())
    }

    async fn vrf_apply(&self, spec: &VpcSpec) -> Result<(), DriverError> {
        let changes = self.apply_vpc(spec).await?;
        info!(vrf = %spec.vrf_name, frr_lines = changes.frr.len(),
              kernel_commands = changes.kernel.len(), "VRF applied");
        Ok(())
    }

    async fn vrf_remove(&self, vrf_name: &str) -> Result<(), DriverError> {
        let changes = self.remove_vrf(vrf_name).await?;
        info!(vrf = %vrf_name, frr_lines = changes.frr.len(),
              kernel_commands = changes.kernel.len(), "VRF removed");
        Ok(())
    }

    async fn evpn_status(&self) -> Result<EvpnStatus, DriverError> {
        FrrSwitchBackend::evpn_status(self).await
    }
}
