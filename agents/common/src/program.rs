//! The main of every agent binary (`host-agent`, `dpu-agent`, `switch-agent`):
//!
//! ```text
//! <agent> --config FILE
//! ```
//!
//! `FILE` is TOML: `listen` (e.g. `"0.0.0.0:7443"`; port 0 picks a free one), `id` (the
//! agent's id, as its certificate and the agents file name it), `[tls]` with `ca_cert`,
//! `cert` and `key` (PEM files: the agents' CA, this agent's server certificate and its key,
//! as `portal-server pki` or `sim-fleet --pki-dir` write them), and `[backend]`, which each
//! agent defines. The agent serves only mutual TLS, prints `listening on ADDR` on standard
//! output once bound, and stops cleanly on SIGTERM or Ctrl-C.
//!
//! A bad command line or config prints one sentence and exits with status 2; a failure to
//! serve exits with status 1.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tonic::transport::server::{Router, TcpIncoming};
use tracing::info;

use crate::tls::{AgentCredentials, CertifiedKey, TlsError, agent_server_name};

/// An agent's config file; `B` is its `[backend]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig<B> {
    pub listen: SocketAddr,
    pub id: String,
    pub tls: TlsFiles,
    pub backend: B,
}

/// The sim device's own id (`field` in its table) must be the agent's `id`, which its
/// certificate names.
pub fn check_device_id(id: &str, device: &str, field: &str, device_id: &str) -> Result<(), String> {
    if device_id == id {
        return Ok(());
    }
    Err(format!(
        "the sim {device}'s {field} {device_id:?} differs from the agent's id {id:?}; make them \
         equal"
    ))
}

/// Why the configured certificate could not be served, as one sentence.
pub fn serve_error(err: impl std::fmt::Display) -> String {
    format!("cannot serve mutual TLS with the configured certificate: {err}")
}

/// The PEM files an agent serves with.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The agents' CA certificate: callers must present a client certificate it signed.
    pub ca_cert: PathBuf,
    /// This agent's server certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn load(&self) -> Result<AgentCredentials, TlsError> {
        use crate::tls::store::read;
        Ok(AgentCredentials {
            ca_pem: read(&self.ca_cert)?,
            identity: CertifiedKey { cert_pem: read(&self.cert)?, key_pem: read(&self.key)? },
        })
    }
}

/// A started agent: its gRPC server, and what to do when it stops (end the watch streams,
/// so open streams do not hold the server up).
pub struct Agent {
    pub router: Router,
    pub on_stop: Box<dyn FnOnce() + Send>,
}

#[derive(Debug, Parser)]
struct Args {
    /// The agent's config file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

const USAGE_ERROR: u8 = 2;

/// Runs agent `name` (e.g. `host-agent`, of certificate kind `kind`): reads the config,
/// calls `start` with it and the TLS credentials, serves the router it returns until a stop
/// signal. `start` errors are config errors (one sentence; exit status 2).
pub fn main<B, F, Fut>(name: &str, kind: &str, start: F) -> ExitCode
where
    B: DeserializeOwned,
    F: FnOnce(AgentConfig<B>, AgentCredentials) -> Fut,
    Fut: Future<Output = Result<Agent, String>>,
{
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) if !err.use_stderr() => {
            print!("{err}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // clap's verdict up to its usage block, on one line.
            let rendered = err.to_string();
            let lines: Vec<&str> =
                rendered.lines().take_while(|l| !l.is_empty()).map(str::trim).collect();
            let verdict = lines.join(" ");
            eprintln!("{name}: {}; run {name} --help", verdict.trim_start_matches("error: "));
            return ExitCode::from(USAGE_ERROR);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (config, credentials) = match load::<B>(&args, kind) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("{name}: {message}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{name}: cannot start the async runtime: {err}; check the process limits");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listen = config.listen;
        let agent = match start(config, credentials).await {
            Ok(agent) => agent,
            Err(message) => {
                eprintln!("{name}: {message}");
                return ExitCode::from(USAGE_ERROR);
            }
        };
        match serve(agent, listen).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{name}: {message}");
                ExitCode::FAILURE
            }
        }
    })
}

fn load<B: DeserializeOwned>(
    args: &Args,
    kind: &str,
) -> Result<(AgentConfig<B>, AgentCredentials), String> {
    let path = args.config.display();
    let text = std::fs::read_to_string(&args.config)
        .map_err(|err| format!("cannot read the config file {path}: {err}"))?;
    let config: AgentConfig<B> = toml::from_str(&text).map_err(|err| {
        let line = err.span().map_or(1, |span| text[..span.start].matches('\n').count() + 1);
        format!("the config file {path} is not valid at line {line}: {}", err.message())
    })?;
    agent_server_name(kind, &config.id).map_err(|err| format!("in {path}, id: {err}"))?;
    let credentials = config.tls.load().map_err(|err| err.to_string())?;
    Ok((config, credentials))
}

async fn serve(agent: Agent, listen: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|err| format!("cannot listen on {listen}: {err}; choose a free address"))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    // The first line of standard output, for whoever started the agent on port 0.
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    info!(%addr, "serving mutual TLS");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let Agent { router, on_stop } = agent;
    let signal = async move {
        match stop_signal().await {
            Ok(()) => info!("stopping"),
            Err(err) => tracing::error!(%err, "cannot listen for stop signals; stopping"),
        }
        on_stop();
    };
    router.serve_with_incoming_shutdown(incoming, signal).await.map_err(|err| {
        format!("the server stopped with an error: {}", crate::error::error_chain(&err))
    })
}

/// Ctrl-C, or SIGTERM on Unix (how service managers stop it).
pub async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// For the agent binaries' tests: certificates and a config in a temporary directory, the
/// binary started on a free loopback port, a mutual-TLS channel to it, a stop by SIGTERM.
pub mod testing {
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};

    use tonic::transport::{Channel, Endpoint};

    use crate::tls::{AgentName, PkiDir};

    /// A fresh directory with a CA and certificates for agent `kind`/`id` and the control
    /// plane.
    pub struct TestDir {
        pub dir: PathBuf,
        pub pki: PkiDir,
        pub kind: &'static str,
        pub id: &'static str,
    }

    impl TestDir {
        pub fn new(name: &str, kind: &'static str, id: &'static str) -> TestDir {
            let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let pki = PkiDir::new(dir.join("pki"));
            pki.ensure(&[AgentName { kind, id }], false).expect("certificates");
            TestDir { dir, pki, kind, id }
        }

        /// Writes a config listening on `127.0.0.1:0` with this agent's certificates and the
        /// given `[backend...]` tables.
        pub fn write_config(&self, backend: &str) -> PathBuf {
            let (cert, key) = self.pki.agent_paths(AgentName { kind: self.kind, id: self.id });
            let config = format!(
                "listen = \"127.0.0.1:0\"\nid = \"{}\"\n[tls]\nca_cert = {:?}\ncert = {:?}\n\
                 key = {:?}\n{backend}",
                self.id,
                self.pki.ca_cert_path(),
                cert,
                key
            );
            let path = self.dir.join("agent.toml");
            std::fs::write(&path, config).expect("config");
            path
        }

        /// Runs `binary --config CONFIG` to completion (for configs it must refuse).
        pub fn run(&self, binary: &str, config: &Path) -> Output {
            Command::new(binary).arg("--config").arg(config).output().expect("run the agent")
        }

        /// Starts `binary --config CONFIG` and waits for its `listening on` line.
        pub async fn start(&self, binary: &str, config: &Path) -> RunningAgent {
            let mut child = Command::new(binary)
                .arg("--config")
                .arg(config)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the agent");
            let mut line = String::new();
            let stdout = child.stdout.take().expect("stdout");
            BufReader::new(stdout).read_line(&mut line).expect("read its address");
            let addr = line.trim().strip_prefix("listening on ").expect("address").to_owned();
            let tls = self
                .pki
                .control_plane()
                .and_then(|c| c.client_config(self.kind, self.id))
                .expect("control plane TLS");
            let channel = Endpoint::from_shared(format!("https://{addr}"))
                .and_then(|e| e.tls_config(tls))
                .expect("endpoint")
                .connect()
                .await
                .expect("connect over mutual TLS");
            RunningAgent { child, channel }
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub struct RunningAgent {
        pub child: Child,
        pub channel: Channel,
    }

    impl RunningAgent {
        /// Sends SIGTERM to the agent's pid and asserts it exits with success.
        pub fn stop(mut self) {
            let pid = self.child.id().to_string();
            let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
            assert!(killed.success());
            let status = self.child.wait().expect("wait");
            assert!(status.success(), "the agent exited with {status}");
        }
    }

    impl Drop for RunningAgent {
        /// A test that failed before `stop` must not leave its agent running.
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
