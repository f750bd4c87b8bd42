//! Command-line and environment settings. Secrets (the first admin's password, database
//! credentials) come from the environment only, so they never show in `ps`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// How the real host runs guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GuestVirt {
    Kvm,
    Qemu,
}

/// The GPU cloud portal.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// A configuration file (TOML; keys are these flags' long names without dashes). Flags
    /// and the environment win over it.
    #[arg(long, env = "PORTAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address the portal listens on.
    #[arg(long, env = "PORTAL_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Directory for the embedded database and other state; created if missing.
    #[arg(long, env = "PORTAL_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Database URL; defaults to SQLite in the data directory. For PostgreSQL:
    /// postgres://user:password@host/db (set it in the environment, not on the command line).
    #[arg(long, env = "PORTAL_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Agents to attach (a TOML file of [[agent]] kind/id/url, as `sim-fleet` writes). Without
    /// it the portal runs a simulated datacenter in-process, reached over gRPC on loopback.
    #[arg(long, env = "PORTAL_AGENTS_FILE")]
    pub agents_file: Option<PathBuf>,

    /// Directory of the agents' CA and the control plane's client certificate (ca.pem,
    /// control-plane.pem, control-plane.key); default: DATA_DIR/pki. With --agents-file they
    /// must exist (see the `pki` command); the simulated datacenter creates them.
    #[arg(long, env = "PORTAL_PKI_DIR", value_name = "DIR")]
    pub pki_dir: Option<PathBuf>,

    /// Topology of the simulated datacenter (default: the built-in HGX H100 topology).
    #[arg(long, env = "PORTAL_SIM_TOPOLOGY", conflicts_with = "agents_file")]
    pub sim_topology: Option<PathBuf>,

    /// Scalable units (32 HGX H100 hosts each) in the simulated datacenter.
    #[arg(long, env = "PORTAL_SIM_SCALABLE_UNITS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=200))]
    pub sim_scalable_units: u32,

    /// Add this machine as one real CPU-only host (`local-1`) beside the simulated
    /// datacenter: its VMs are real guests under libvirt (qemu:///system, which must run),
    /// booted from --real-host-images. `.ci/serve` turns it on when libvirt can start a
    /// guest here.
    #[arg(long, env = "PORTAL_REAL_HOST", conflicts_with = "agents_file")]
    pub real_host: bool,

    /// The real host's image store: the files the image catalog names (`.ci/serve` builds
    /// the tiny test guest there).
    #[arg(long, env = "PORTAL_REAL_HOST_IMAGES", default_value = "target/images")]
    pub real_host_images: PathBuf,

    /// How the real host runs guests: kvm, or qemu (software emulation) where KVM guests do
    /// not boot.
    #[arg(long, env = "PORTAL_REAL_HOST_VIRT", value_enum, default_value_t = GuestVirt::Qemu)]
    pub real_host_virt: GuestVirt,

    /// GiB of this machine's memory the real host's VMs may use.
    #[arg(long, env = "PORTAL_REAL_HOST_MEMORY_GIB", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub real_host_memory_gib: u32,

    /// Seconds a simulated host takes to bring a VM from provisioning to running.
    #[arg(long, env = "PORTAL_SIM_PROVISION_SECS", default_value_t = 1.5)]
    pub sim_provision_secs: f64,

    /// Seconds a launch may stay provisioning before it is undone and marked failed.
    #[arg(long, env = "PORTAL_PROVISION_DEADLINE_SECS", default_value_t = 600)]
    pub provision_deadline_secs: u64,

    /// Seconds a delete may wait for its host to confirm the VM is gone before the instance
    /// is marked failed (its GPUs stay reserved until the host confirms).
    #[arg(long, env = "PORTAL_DELETE_DEADLINE_SECS", default_value_t = 600)]
    pub delete_deadline_secs: u64,

    /// Seconds a VM that a host runs but the database does not want is listed before it is
    /// removed.
    #[arg(long, env = "PORTAL_STRAY_GRACE_SECS", default_value_t = 300)]
    pub stray_grace_secs: u64,

    /// The provider's currency, an ISO 4217 code with cents (USD, EUR, GBP, CHF, …): prices
    /// and invoices are in it. Choose it before the first invoice; changing it later does
    /// not convert prices.
    #[arg(long, env = "PORTAL_CURRENCY", default_value = "USD", value_parser = currency_code)]
    pub currency: String,

    /// Directory holding the browser bundle (pkg/portal.js, pkg/portal_bg.wasm, pkg/portal.css).
    #[arg(long, env = "PORTAL_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "PORTAL_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM, PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "PORTAL_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mark session cookies Secure (automatic with --tls-cert or an https:// --public-url).
    #[arg(long, env = "PORTAL_SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,

    /// Reverse proxies in front of the portal (addresses or networks, comma-separated):
    /// only from these is X-Forwarded-For believed for the client's address.
    #[arg(long, env = "PORTAL_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::client_ip::Net>,

    /// Log format.
    #[arg(long, env = "PORTAL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Print every API route (method and path) and exit; the authorization matrix test
    /// is generated from this list.
    #[arg(long)]
    pub print_routes: bool,

    /// The first provider admin's password, used only when the database has no users yet.
    /// Without it a password is generated and printed once.
    #[arg(skip = std::env::var("PORTAL_ADMIN_PASSWORD").ok())]
    pub admin_password: Option<String>,

    /// Where browsers reach the portal (e.g. https://gpu.example.com), for the single
    /// sign-on redirect URL {public-url}/auth/oidc/callback registered at identity
    /// providers, and as the portal's origin behind a proxy that rewrites the Host header.
    /// Default: http://{listen}.
    #[arg(long, env = "PORTAL_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// When set, `/metrics` answers only requests with `Authorization: Bearer <token>`
    /// (set it in the environment, not on the command line). Without it `/metrics` is open;
    /// keep it off the public path at the reverse proxy.
    #[arg(long, env = "PORTAL_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One-off commands instead of serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Back the database up to a new file and exit: SQLite online (the portal may keep
    /// running), PostgreSQL with pg_dump. Back the secret key up separately.
    Backup {
        /// The file to write (it must not exist).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Replace the database with a backup and exit. SQLite: stop the portal first; the
    /// replaced file is kept as portal.db.before-restore. PostgreSQL: pg_restore --clean.
    Restore {
        /// The backup to restore.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Restore although SQLite's write-ahead log says the database is open (after a
        /// crash; never while a portal runs).
        #[arg(long)]
        force: bool,
    },
    /// Create the agents' mutual TLS certificates and exit: a CA, one server certificate per
    /// agent of the agents file and the control plane's client certificate, keeping those
    /// that exist. Copy ca.pem and agents/<kind>/<id>.pem and .key to each agent.
    Pki {
        /// The agents file (TOML of [[agent]] kind/id/url) to make certificates for.
        #[arg(long, value_name = "FILE")]
        agents_file: PathBuf,
        /// Where to write them; default: the portal's --pki-dir (DATA_DIR/pki).
        #[arg(long, value_name = "DIR")]
        pki_dir: Option<PathBuf>,
    },
}

impl Config {
    /// Browsers reach the portal over https (it serves TLS, or its public URL says so):
    /// cookies are `Secure` and HSTS is sent.
    pub fn is_https(&self) -> bool {
        self.tls_cert.is_some()
            || self
                .public_url
                .as_deref()
                .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }

    /// Where the agents' CA and the control plane's certificate are.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki_dir.clone().unwrap_or_else(|| self.data_dir.join("pki"))
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", self.data_dir.join("portal.db").display())
        })
    }
}

/// Three capital letters, as ISO 4217 codes are.
fn currency_code(value: &str) -> Result<String, String> {
    if value.len() == 3 && value.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "\"{value}\" is not a currency code; give three capital letters such as USD or EUR"
        ))
    }
}
