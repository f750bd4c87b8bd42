//! What the browser sends. Validation lives next to each type so the browser can show the
//! same message before the round trip; the server always validates again.

use serde::{Deserialize, Serialize};

use crate::Error;

/// GPU counts a VM can have: none (CPU-only) or exactly the size of a Fabric Manager
/// partition.
pub const GPU_COUNTS: [u32; 5] = [0, 1, 2, 4, 8];

/// VMs launched together at most.
pub const MAX_GROUP: u32 = 64;

/// Where the VMs of one launch go relative to each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PlacementPolicy {
    /// Wherever fits best.
    #[default]
    Any,
    /// All in one scalable unit (one rail-optimised fabric), for multi-node training.
    Cluster,
    /// On different hosts, and different leaves where possible.
    Spread,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceCreate {
    pub name: String,
    /// The catalog name of the instance type, e.g. `h100x1`.
    pub instance_type: String,
    /// How many VMs; more than one are named `name-1` … `name-N` and placed all or nothing.
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub placement: PlacementPolicy,
    /// The catalog name of the image to boot; empty: the newest active image.
    #[serde(default)]
    pub image: String,
    /// Makes the request safe to repeat: another launch with the same key in the same tenant
    /// returns the instances the first made (up to 64 of `A-Za-z0-9_-`; empty: none).
    #[serde(default)]
    pub idempotency_key: String,
    /// The caller's SSH keys to put into the VMs (the image's default user gets them).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, format = Uuid))]
    pub ssh_keys: Vec<crate::ids::SshKeyUuid>,
    /// cloud-init user data (`#cloud-config …` or a script starting with `#!`), at most
    /// 16 KiB; empty: none.
    #[serde(default)]
    pub user_data: String,
    /// The subnet for the VMs' network interface; none: the tenant's default subnet.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    pub subnet: Option<crate::ids::SubnetUuid>,
    /// Their security groups; empty: the tenant's default group.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>, format = Uuid))]
    pub security_groups: Vec<crate::ids::SecurityGroupUuid>,
}

/// The most cloud-init user data a launch may carry.
pub const MAX_USER_DATA: usize = 16 * 1024;

fn one() -> u32 {
    1
}

impl InstanceCreate {
    /// One VM of a type, placed anywhere.
    pub fn one(name: impl Into<String>, instance_type: impl Into<String>) -> Self {
        InstanceCreate {
            name: name.into(),
            instance_type: instance_type.into(),
            count: 1,
            placement: PlacementPolicy::Any,
            image: String::new(),
            idempotency_key: String::new(),
            ssh_keys: Vec::new(),
            user_data: String::new(),
            subnet: None,
            security_groups: Vec::new(),
        }
    }

    /// The key each VM of this launch records (`<key>/<n>`), if the launch has one.
    pub fn idempotency_keys(&self) -> Vec<String> {
        if self.idempotency_key.is_empty() {
            return Vec::new();
        }
        (1..=self.count).map(|n| format!("{}/{n}", self.idempotency_key)).collect()
    }

    /// The names of the VMs this launch creates.
    pub fn names(&self) -> Vec<String> {
        if self.count == 1 {
            vec![self.name.clone()]
        } else {
            (1..=self.count).map(|i| format!("{}-{i}", self.name)).collect()
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.instance_type.is_empty() {
            return Err(Error::invalid("Pick an instance type."));
        }
        if !(1..=MAX_GROUP).contains(&self.count) {
            return Err(Error::invalid(format!(
                "Launch 1 to {MAX_GROUP} VMs at once, not {}.",
                self.count
            )));
        }
        let key_ok = self.idempotency_key.len() <= 64
            && self.idempotency_key.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
        if !key_ok {
            return Err(Error::invalid(
                "An idempotency key is up to 64 letters, digits, - and _ (a UUID fits).",
            ));
        }
        if self.user_data.len() > MAX_USER_DATA {
            return Err(Error::invalid(format!(
                "User data is at most {} KiB; keep the rest in a file the script downloads.",
                MAX_USER_DATA / 1024
            )));
        }
        let data = self.user_data.trim_start();
        if !data.is_empty() && !data.starts_with("#cloud-config") && !data.starts_with("#!") {
            return Err(Error::invalid(
                "User data starts with #cloud-config or with #! and an interpreter (e.g. \
                 #!/bin/sh); add that first line.",
            ));
        }
        validate_name(&self.name)?;
        for name in self.names() {
            validate_name(&name)?;
        }
        Ok(())
    }
}

/// What a user may do to a VM's power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PowerAction {
    Start,
    /// A clean shutdown (the guest is asked; powered off if it does not comply in time).
    Stop,
    Reboot,
    /// Pulls the plug: no clean shutdown.
    PowerOff,
}

impl PowerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Start => "start",
            PowerAction::Stop => "stop",
            PowerAction::Reboot => "reboot",
            PowerAction::PowerOff => "power-off",
        }
    }

    /// The button's label.
    pub fn label(self) -> &'static str {
        match self {
            PowerAction::Start => "Start",
            PowerAction::Stop => "Stop",
            PowerAction::Reboot => "Reboot",
            PowerAction::PowerOff => "Power off",
        }
    }
}

/// A new catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceTypeCreate {
    pub name: String,
    /// Empty for a CPU-only type.
    pub gpu_model: String,
    pub gpu_count: u32,
    pub vcpus: u32,
    pub memory_gib: u32,
    pub disk_gib: u32,
    pub price_cents_per_hour: u64,
}

impl InstanceTypeCreate {
    pub fn validate(&self) -> Result<(), Error> {
        validate_name(&self.name)?;
        if !GPU_COUNTS.contains(&self.gpu_count) {
            return Err(Error::invalid(format!(
                "An instance type has 0, 1, 2, 4 or 8 GPUs, not {}; pick one of those.",
                self.gpu_count
            )));
        }
        if self.gpu_count > 0 && self.gpu_model.trim().is_empty() {
            return Err(Error::invalid("Name the GPU model of a type with GPUs."));
        }
        if self.gpu_count == 0 && !self.gpu_model.is_empty() {
            return Err(Error::invalid("A CPU-only type has no GPU model; leave it empty."));
        }
        if !(1..=512).contains(&self.vcpus) || !(1..=4096).contains(&self.memory_gib) {
            return Err(Error::invalid(
                "An instance type has 1 to 512 vCPUs and 1 to 4096 GiB of memory.",
            ));
        }
        if !(10..=65536).contains(&self.disk_gib) {
            return Err(Error::invalid("The disk is 10 to 65536 GiB."));
        }
        Ok(())
    }
}

/// A new image in the catalog: a disk image in every host's local image store, and what
/// users see about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageCreate {
    /// e.g. `ubuntu-24.04-cuda-12.8`.
    pub name: String,
    /// e.g. `Ubuntu 24.04 LTS`.
    pub os: String,
    /// Empty when the image has no CUDA toolkit.
    #[serde(default)]
    pub cuda_version: String,
    /// Empty when the image has no NVIDIA driver.
    #[serde(default)]
    pub driver_version: String,
    /// The account cloud-init gives the launch's SSH keys, e.g. `ubuntu`.
    pub default_user: String,
    /// The file in the hosts' image store, e.g. `ubuntu-24.04-cuda-12.8.qcow2`.
    pub source: String,
}

impl ImageCreate {
    pub fn validate(&self) -> Result<(), Error> {
        let ok_chars = self
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c));
        let starts = self.name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if self.name.is_empty() || self.name.len() > 64 || !ok_chars || !starts {
            return Err(Error::invalid(format!(
                "The image name \"{}\" is not valid: use 1 to 64 lowercase letters, digits, dots \
                 and hyphens, starting with a letter.",
                self.name
            )));
        }
        if self.os.trim().is_empty() || self.os.len() > 64 {
            return Err(Error::invalid("Name the operating system in 1 to 64 characters."));
        }
        for (what, version) in [("CUDA", &self.cuda_version), ("driver", &self.driver_version)] {
            if version.len() > 32 || !version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
            {
                return Err(Error::invalid(format!(
                    "The {what} version \"{version}\" is not valid: use digits and dots (e.g. \
                     12.8), or leave it empty."
                )));
            }
        }
        let user_ok = self.default_user.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && self.default_user.len() <= 32
            && self
                .default_user
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c));
        if !user_ok {
            return Err(Error::invalid(format!(
                "The default user \"{}\" is not a valid Linux user name: use 1 to 32 lowercase \
                 letters, digits, - and _, starting with a letter.",
                self.default_user
            )));
        }
        let source_ok = !self.source.is_empty()
            && self.source.len() <= 128
            && !self.source.starts_with('.')
            && self.source.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && (self.source.ends_with(".qcow2")
                || self.source.ends_with(".img")
                || self.source.ends_with(".raw"));
        if !source_ok {
            return Err(Error::invalid(format!(
                "The source \"{}\" is not a file name in the image store: use letters, digits, -, _ \
                 and dots, ending in .qcow2, .img or .raw, without a directory.",
                self.source
            )));
        }
        Ok(())
    }
}

/// SSH public keys a user may keep (per tenant).
pub const MAX_SSH_KEYS: usize = 50;

/// The longest public key text accepted: an RSA 16384-bit key is under 3 KiB.
pub const MAX_SSH_KEY_TEXT: usize = 16 * 1024;

/// The key types the portal accepts, as OpenSSH names them.
pub const SSH_KEY_TYPES: [&str; 5] =
    ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"];

/// A new SSH public key: a name and the one line of `~/.ssh/id_ed25519.pub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshKeyCreate {
    pub name: String,
    pub public_key: String,
}

impl SshKeyCreate {
    /// What can be checked without decoding the key, so the browser refuses a private key
    /// before it is ever sent; the server decodes and checks the key itself.
    pub fn validate(&self) -> Result<(), Error> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(Error::invalid("Give the key a name of 1 to 64 characters, on one line."));
        }
        let key = self.public_key.trim();
        // Checked before anything else so that no other message can quote a private key.
        if looks_private(key) {
            return Err(Error::invalid(
                "That is a private key: it never leaves your computer. Paste the public key \
                 instead, the one line of ~/.ssh/id_ed25519.pub.",
            ));
        }
        if key.len() > MAX_SSH_KEY_TEXT {
            return Err(Error::invalid(format!(
                "That is longer than any public key ({} KiB at most); paste the one line of \
                 ~/.ssh/id_ed25519.pub.",
                MAX_SSH_KEY_TEXT / 1024
            )));
        }
        let algorithm = key.split_ascii_whitespace().next().unwrap_or_default();
        if algorithm == "ssh-dss" {
            return Err(Error::invalid(
                "DSA keys are no longer safe and OpenSSH refuses them; make an ed25519 key with \
                 ssh-keygen -t ed25519 and paste ~/.ssh/id_ed25519.pub.",
            ));
        }
        if key.is_empty() || key.contains(['\n', '\r']) || !SSH_KEY_TYPES.contains(&algorithm) {
            return Err(not_a_public_key());
        }
        Ok(())
    }
}

/// The refusal of text that is not one OpenSSH public key line.
pub fn not_a_public_key() -> Error {
    Error::invalid(
        "That is not an OpenSSH public key; paste the one line from ~/.ssh/id_ed25519.pub (it \
         starts with ssh-ed25519, ecdsa-sha2-nistp256 or ssh-rsa).",
    )
}

/// PEM or OpenSSH private keys, and PuTTY's key files (which hold the private key).
fn looks_private(text: &str) -> bool {
    text.contains("PRIVATE KEY") || text.starts_with("PuTTY-User-Key-File")
}

/// The quota resources: `instances`, `vcpus`, `memory_gib`, or `gpus:<model>`.
pub fn validate_quota_resource(resource: &str) -> Result<(), Error> {
    let ok = matches!(resource, "instances" | "vcpus" | "memory_gib" | "public_ips")
        || resource.strip_prefix("gpus:").is_some_and(|m| !m.trim().is_empty());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "\"{resource}\" is not a quota resource; use instances, vcpus, memory_gib, \
             public_ips or gpus:<model>."
        )))
    }
}

/// A quota limit as typed in the portal: a whole number, `unlimited`, or nothing for the
/// provider's default (for a default itself: none, so that tenants get nothing of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum QuotaLimit {
    Default,
    Unlimited,
    Max(u64),
}

impl QuotaLimit {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.trim() {
            "" => Ok(QuotaLimit::Default),
            t if t.eq_ignore_ascii_case("unlimited") => Ok(QuotaLimit::Unlimited),
            t => t.parse().map(QuotaLimit::Max).map_err(|_| {
                Error::invalid(format!(
                    "The limit \"{t}\" is not a whole number; enter one, \"unlimited\", or \
                     nothing for the default."
                ))
            }),
        }
    }
}

/// Names are DNS labels so they can become host names: 1–63 of `a-z0-9-`, starting with a
/// letter, not ending with `-`.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if name.is_empty() || name.len() > 63 || !ok_chars || !starts || name.ends_with('-') {
        return Err(Error::invalid(format!(
            "The name \"{name}\" is not valid: use 1 to 63 lowercase letters, digits and \
             hyphens, starting with a letter and not ending with a hyphen."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for good in ["a", "train-01", "x9"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "9lives", "Upper", "trailing-", "has space", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    fn h100(gpus: u32) -> InstanceTypeCreate {
        InstanceTypeCreate {
            name: "t".into(),
            gpu_model: "H100".into(),
            gpu_count: gpus,
            vcpus: 24,
            memory_gib: 220,
            disk_gib: 200,
            price_cents_per_hour: 249,
        }
    }

    #[test]
    fn gpu_counts_are_partition_sizes() {
        for n in [3, 5, 16] {
            let err = h100(n).validate().unwrap_err();
            assert!(err.to_string().contains("0, 1, 2, 4 or 8"), "{err}");
        }
        assert!(h100(8).validate().is_ok());
        let cpu_only = InstanceTypeCreate { gpu_model: String::new(), ..h100(0) };
        assert!(cpu_only.validate().is_ok());
        assert!(h100(0).validate().is_err(), "a CPU-only type names no GPU model");
    }

    #[test]
    fn groups_name_their_members_and_stay_within_bounds() {
        let mut create = InstanceCreate::one("train", "h100x8");
        assert_eq!(create.names(), ["train"]);
        create.count = 3;
        assert_eq!(create.names(), ["train-1", "train-2", "train-3"]);
        assert!(create.validate().is_ok());
        create.count = 0;
        assert!(create.validate().unwrap_err().to_string().contains("1 to 64"));
        // The suffix must still fit a DNS label.
        let long = InstanceCreate { count: 2, ..InstanceCreate::one("a".repeat(62), "h100x1") };
        assert!(long.validate().is_err());
    }

    #[test]
    fn quota_resources_are_a_closed_set() {
        for ok in ["instances", "vcpus", "memory_gib", "public_ips", "gpus:H100-SXM5-80GB"] {
            assert!(validate_quota_resource(ok).is_ok(), "{ok}");
        }
        for bad in ["gpus:", "cpus", ""] {
            assert!(validate_quota_resource(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_keys_are_checked_before_they_are_sent() {
        let key = |public_key: &str| SshKeyCreate {
            name: "laptop".into(),
            public_key: public_key.into(),
        };
        let ed =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti me@x";
        assert!(key(ed).validate().is_ok());
        assert!(key(&format!("  {ed}\n")).validate().is_ok());
        let private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        let err = key(private).validate().unwrap_err().to_string();
        assert!(err.contains("private key") && !err.contains("b3Blbn"), "{err}");
        assert!(
            key("ssh-dss AAAAB3NzaC1kc3M=").validate().unwrap_err().to_string().contains("DSA")
        );
        assert_eq!(key("hello").validate().unwrap_err(), not_a_public_key());
        assert_eq!(key("").validate().unwrap_err(), not_a_public_key());
        assert_eq!(key(&format!("{ed}\n{ed}")).validate().unwrap_err(), not_a_public_key());
        let long = format!("ssh-rsa {}", "A".repeat(MAX_SSH_KEY_TEXT));
        assert!(key(&long).validate().unwrap_err().to_string().contains("16 KiB"));
        for name in ["", "  ", &"n".repeat(65), "a\tb"] {
            let bad = SshKeyCreate { name: name.into(), public_key: ed.into() };
            assert!(bad.validate().unwrap_err().to_string().contains("1 to 64"), "{name:?}");
        }
    }
}
