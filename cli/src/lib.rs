//! `gpuctl`: the portal's command-line client over its REST API (`/api/v1`). [`run`] is the
//! whole program, callable in-process (the tests do); `main.rs` only calls it.

mod api;
mod config;
mod table;

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use portal_types::billing::{Invoice, UsageSummary};
use portal_types::params::{InstanceCreate, MAX_USER_DATA, PowerAction, SshKeyCreate};
use portal_types::views::{
    ImageView, InstanceDetail, InstanceState, InstanceType, InstanceView, Me, SshKeyView,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use api::{Api, api_error, decode};

/// The exit codes scripts can rely on.
pub mod exit {
    pub const OK: i32 = 0;
    /// Anything not below.
    pub const OTHER: i32 = 1;
    /// The command line is not valid (clap's code).
    pub const USAGE: i32 = 2;
    /// Not signed in, or the portal refused the token (401).
    pub const AUTH: i32 = 3;
    /// The token's role does not allow this (403).
    pub const FORBIDDEN: i32 = 4;
    /// No such instance, key, image or month (404).
    pub const NOT_FOUND: i32 = 5;
    /// The request is not valid, or the object's state does not allow it now (400, 409).
    pub const INVALID: i32 = 6;
    /// Not enough free capacity for the launch (507).
    pub const CAPACITY: i32 = 7;
    /// The portal is unavailable, unreachable or throttling (503, 429, no connection).
    pub const UNAVAILABLE: i32 = 8;
    /// `--wait` timed out, or the instance failed.
    pub const WAIT: i32 = 9;
}

const LONG_ABOUT: &str = "\
The GPU cloud portal's command-line client: launch, watch, power and delete instances, \
manage SSH keys, read images, instance types, usage and invoices over the REST API.

Sign in once with an API token from the portal's Account page:

    gpuctl login --url https://portal.example.com      (pastes the token from stdin)

GPUCTL_URL and GPUCTL_TOKEN, or --url and --token, override the stored sign-in.

Exit codes:
  0  ok
  1  any other error
  2  usage error (the command line is not valid)
  3  not signed in, or the portal refused the token (401)
  4  forbidden: the token's role does not allow this (403)
  5  not found (404)
  6  invalid request, or conflict with the object's state (400, 409)
  7  no capacity for the launch (507)
  8  portal unavailable or unreachable (503, 429, connection refused, timeout)
  9  --wait timed out, or the instance failed";

/// A failed command: the sentence for stderr and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError { code, message: message.into() }
    }

    pub fn other(message: impl Into<String>) -> Self {
        CliError::new(exit::OTHER, message)
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::other(format!("Cannot write the output: {e}."))
    }
}

type Result<T, E = CliError> = std::result::Result<T, E>;

#[derive(Debug, Parser)]
#[command(name = "gpuctl", version, about = "The GPU cloud portal's command-line client",
    long_about = LONG_ABOUT)]
struct Cli {
    /// The portal's URL, e.g. https://portal.example.com.
    #[arg(long, global = true, env = "GPUCTL_URL", value_name = "URL")]
    url: Option<String>,
    /// An API token (gpc_…); prefer GPUCTL_TOKEN or `gpuctl login`, which keep it out of
    /// the process list.
    #[arg(long, global = true, env = "GPUCTL_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// The config file (default: $XDG_CONFIG_HOME/gpuctl/config.toml or
    /// ~/.config/gpuctl/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// table for people, json (the API's JSON) for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks an API token and stores it with the portal's URL (the token from --token,
    /// GPUCTL_TOKEN or stdin).
    Login,
    /// Forgets the stored URL and token.
    Logout,
    /// Who the token acts as.
    Whoami,
    /// Instances (VMs).
    #[command(subcommand)]
    Instances(InstancesCommand),
    /// Opens ssh to an instance as its image's user, at its first address.
    Ssh {
        /// The instance's name or id.
        instance: String,
        /// Print the ssh command instead of running it.
        #[arg(long)]
        dry_run: bool,
        /// More arguments for ssh (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The images a launch can boot.
    #[command(subcommand)]
    Images(ListCommand),
    /// Your SSH public keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A month's usage: cost to date, forecast, cost per instance.
    Usage {
        /// YYYY-MM (UTC); default: this month.
        #[arg(long, value_parser = month)]
        month: Option<String>,
    },
    /// A month's invoice.
    Invoice {
        /// YYYY-MM (UTC).
        #[arg(value_parser = month)]
        month: String,
    },
    /// The instance types and their prices.
    #[command(subcommand)]
    Types(ListCommand),
    /// Prints a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
enum ListCommand {
    /// Lists them.
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
enum InstancesCommand {
    /// Lists the tenant's instances (every page).
    List {
        /// Only instances in this state (e.g. running, stopped).
        #[arg(long, value_parser = state)]
        state: Option<InstanceState>,
        /// Only instances whose name contains this.
        #[arg(long)]
        name: Option<String>,
    },
    /// Launches instances of a type.
    Launch(LaunchArgs),
    /// One instance in detail.
    Show {
        /// The instance's name or id.
        instance: String,
    },
    /// Shuts an instance down cleanly (it keeps its GPUs, disk and address).
    Stop(ChangeArgs),
    /// Starts a stopped instance.
    Start(ChangeArgs),
    /// Reboots an instance.
    Reboot(ChangeArgs),
    /// Powers an instance off without a clean shutdown.
    PowerOff(ChangeArgs),
    /// Deletes an instance: its VM, disk and addresses go.
    Delete(ChangeArgs),
}

#[derive(Debug, Args)]
struct LaunchArgs {
    /// The instance type (`gpuctl types list`).
    #[arg(long = "type", value_name = "TYPE")]
    instance_type: String,
    /// The name; with --count N the instances are NAME-1 … NAME-N.
    #[arg(long)]
    name: String,
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// The image's name (`gpuctl images list`); default: the newest.
    #[arg(long)]
    image: Option<String>,
    /// An SSH key to put in (name or id); repeat for more.
    #[arg(long = "key", value_name = "NAME_OR_ID")]
    keys: Vec<String>,
    /// cloud-init user data (#cloud-config … or a #! script), at most 16 KiB.
    #[arg(long, value_name = "FILE")]
    user_data_file: Option<PathBuf>,
    /// Makes the launch safe to repeat (default: a new random one, retried with).
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Wait until the instances run.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    timeout: u64,
}

#[derive(Debug, Args)]
struct ChangeArgs {
    /// The instance's name or id.
    instance: String,
    /// Wait until the change is done.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    timeout: u64,
}

fn month(text: &str) -> Result<String, String> {
    let b = text.as_bytes();
    let ok = b.len() == 7
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..].iter().all(u8::is_ascii_digit)
        && matches!(text[5..].parse::<u32>(), Ok(1..=12));
    if ok { Ok(text.to_owned()) } else { Err("a month is YYYY-MM, e.g. 2026-01".to_owned()) }
}

fn state(text: &str) -> Result<InstanceState, String> {
    InstanceState::parse(&text.to_ascii_lowercase()).ok_or_else(|| {
        let all: Vec<&str> = InstanceState::ALL.iter().map(|s| s.as_str()).collect();
        format!("one of {}", all.join(", "))
    })
}

/// Runs gpuctl with `args` (the program's name first); answers the exit code. Output goes
/// to `out`, progress and errors to `err`.
pub async fn run(args: Vec<String>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            return if e.use_stderr() {
                let _ = write!(err, "{}", e.render());
                exit::USAGE
            } else {
                let _ = write!(out, "{}", e.render());
                exit::OK
            };
        }
    };
    let secret = cli.token.clone().filter(|t| t.len() >= 8);
    match execute(cli, out, err).await {
        Ok(()) => exit::OK,
        Err(e) => {
            let mut message = e.message;
            // Never a token in an error, whatever produced the sentence.
            if let Some(secret) = &secret {
                message = message.replace(secret.as_str(), "gpc_…");
            }
            let _ = writeln!(err, "gpuctl: {message}");
            e.code
        }
    }
}

async fn execute(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let json = cli.output == Output::Json;
    match &cli.command {
        Command::Login => return login(&cli, out, err).await,
        Command::Logout => {
            let path = config::path(cli.config.as_deref())?;
            if config::remove(&path)? {
                writeln!(out, "Signed out: removed {}.", path.display())?;
            } else {
                writeln!(out, "Not signed in ({} does not exist).", path.display())?;
            }
            return Ok(());
        }
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut Cli::command(), "gpuctl", out);
            return Ok(());
        }
        _ => {}
    }
    let api = connect(&cli)?;
    match cli.command {
        Command::Login | Command::Logout | Command::Completions { .. } => Ok(()),
        Command::Whoami => {
            let text = api.get("/me", &[]).await?;
            if json {
                return print_json(out, &text);
            }
            let me: Me = decode(&text)?;
            table::pairs(
                out,
                &[
                    ("user", me.username),
                    ("tenant", me.tenant_name),
                    ("role", me.role.as_str().to_owned()),
                    ("provider admin", yes_no(me.provider_admin)),
                    ("portal", api.base().to_owned()),
                ],
            )?;
            Ok(())
        }
        Command::Types(ListCommand::List) => {
            let items = api.list_all("/instance-types", &[]).await?;
            if json {
                return print_items(out, &items);
            }
            let types: Vec<InstanceType> = typed(&items)?;
            let rows: Vec<Vec<String>> = types
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        gpus(t.gpu_count, &t.gpu_model),
                        t.vcpus.to_string(),
                        format!("{} GiB", t.memory_gib),
                        format!("{} GiB", t.disk_gib),
                        portal_types::billing::MoneyFormat::english("")
                            .decimal_micros(t.price_micros_per_hour),
                    ]
                })
                .collect();
            table::print(out, &["NAME", "GPUS", "VCPUS", "MEMORY", "DISK", "PRICE/H"], &rows)?;
            Ok(())
        }
        Command::Images(ListCommand::List) => {
            let items = api.list_all("/images", &[]).await?;
            if json {
                return print_items(out, &items);
            }
            let images: Vec<ImageView> = typed(&items)?;
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|i| {
                    vec![
                        i.name.clone(),
                        i.os.clone(),
                        dash(&i.cuda_version),
                        dash(&i.driver_version),
                        i.default_user.clone(),
                        if i.retired { "retired".to_owned() } else { "active".to_owned() },
                        i.id.to_string(),
                    ]
                })
                .collect();
            table::print(out, &["NAME", "OS", "CUDA", "DRIVER", "USER", "STATUS", "ID"], &rows)?;
            Ok(())
        }
        Command::Keys(keys) => keys_command(&api, keys, json, out).await,
        Command::Usage { month } => {
            let query: Vec<(&str, &str)> =
                month.as_deref().map(|m| vec![("month", m)]).unwrap_or_default();
            let text = api.get("/usage", &query).await?;
            if json {
                return print_json(out, &text);
            }
            print_usage(out, &decode(&text)?)
        }
        Command::Invoice { month } => {
            let text = api.get(&format!("/usage/invoices/{month}"), &[]).await?;
            if json {
                return print_json(out, &text);
            }
            print_invoice(out, &decode(&text)?)
        }
        Command::Instances(command) => instances_command(&api, command, json, out, err).await,
        Command::Ssh { instance, dry_run, args } => {
            ssh(&api, &instance, dry_run, &args, out, err).await
        }
    }
}

/// The API from the flags, the environment or the stored sign-in.
fn connect(cli: &Cli) -> Result<Api> {
    let stored = config::load(&config::path(cli.config.as_deref())?)?.unwrap_or_default();
    let url = cli.url.clone().filter(|u| !u.trim().is_empty()).unwrap_or(stored.url);
    let token = cli.token.clone().filter(|t| !t.trim().is_empty()).unwrap_or(stored.token);
    if url.trim().is_empty() || token.trim().is_empty() {
        return Err(CliError::new(
            exit::AUTH,
            "Not signed in: run `gpuctl login --url <portal URL>`, or set GPUCTL_URL and \
             GPUCTL_TOKEN.",
        ));
    }
    Api::new(&url, token.trim())
}

async fn login(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<()> {
    let path = config::path(cli.config.as_deref())?;
    let stored = config::load(&path).ok().flatten().unwrap_or_default();
    let url = match cli.url.clone().filter(|u| !u.trim().is_empty()) {
        Some(url) => url,
        None if !stored.url.is_empty() => stored.url,
        None => {
            return Err(CliError::new(
                exit::USAGE,
                "Which portal? Pass --url https://portal.example.com (or set GPUCTL_URL).",
            ));
        }
    };
    let url = api::normalize_url(&url)?;
    let token = match cli.token.clone().filter(|t| !t.trim().is_empty()) {
        Some(token) => token,
        None => read_token(err)?,
    };
    let token = token.trim().to_owned();
    if let Ok(parsed) = reqwest::Url::parse(&url)
        && parsed.scheme() == "http"
        && !matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
    {
        writeln!(err, "gpuctl: warning: {url} is plain http; the token travels unencrypted.")?;
    }
    let api = Api::new(&url, &token)?;
    let text = api.get("/me", &[]).await?;
    let me: Me = decode(&text)?;
    config::save(&path, &config::Config { url: url.clone(), token })?;
    if cli.output == Output::Json {
        return print_json(out, &text);
    }
    writeln!(
        out,
        "Signed in to {url} as {} in {} ({}); saved to {}.",
        me.username,
        me.tenant_name,
        me.role.as_str(),
        path.display()
    )?;
    Ok(())
}

/// The terminal's echo off until dropped, so a typed or pasted token is not shown.
struct NoEcho(Option<nix::sys::termios::Termios>);

impl NoEcho {
    fn on_stdin() -> NoEcho {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(before) = tcgetattr(&stdin) else { return NoEcho(None) };
        let mut quiet = before.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &quiet);
        NoEcho(Some(before))
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(before) = &self.0 {
            use nix::sys::termios::{SetArg, tcsetattr};
            let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, before);
        }
    }
}

/// The token from stdin: one line (prompted for, and not echoed, when stdin is a terminal).
fn read_token(err: &mut dyn Write) -> Result<String> {
    let stdin = std::io::stdin();
    let quiet = if stdin.is_terminal() {
        write!(err, "API token (from the portal's Account page, not shown): ")?;
        err.flush()?;
        Some(NoEcho::on_stdin())
    } else {
        None
    };
    let mut line = String::new();
    let mut limited = stdin.lock().take(4096);
    let mut buf = [0u8; 1];
    while limited.read(&mut buf).map_err(|e| CliError::other(format!("Cannot read stdin: {e}.")))?
        == 1
    {
        if buf[0] == b'\n' {
            break;
        }
        line.push(buf[0] as char);
    }
    if quiet.is_some() {
        // The Enter that ended the line was not echoed either.
        writeln!(err)?;
    }
    let token = line.trim().to_owned();
    if token.is_empty() {
        return Err(CliError::new(
            exit::AUTH,
            "No token: pass --token, set GPUCTL_TOKEN, or give it on stdin.",
        ));
    }
    Ok(token)
}

async fn keys_command(
    api: &Api,
    command: KeysCommand,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        KeysCommand::List => {
            let items = api.list_all("/ssh-keys", &[]).await?;
            if json {
                return print_items(out, &items);
            }
            let keys: Vec<SshKeyView> = typed(&items)?;
            let rows: Vec<Vec<String>> = keys.iter().map(key_row).collect();
            table::print(out, &KEY_HEADERS, &rows)?;
            Ok(())
        }
        KeysCommand::Add { name, file } => {
            let text = read_bounded(&file, 16 * 1024, "public key file")?;
            if text.contains("PRIVATE KEY") {
                return Err(CliError::new(
                    exit::INVALID,
                    format!(
                        "{} is a private key; give the public one (the .pub file).",
                        file.display()
                    ),
                ));
            }
            let public_key = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
            let body =
                serde_json::to_value(SshKeyCreate { name, public_key: public_key.to_owned() })
                    .map_err(|e| CliError::other(format!("Cannot encode the key: {e}.")))?;
            let text = api.call(Method::POST, "/ssh-keys", &[], Some(&body), &[]).await?;
            if json {
                return print_json(out, &text);
            }
            let key: SshKeyView = decode(&text)?;
            table::print(out, &KEY_HEADERS, &[key_row(&key)])?;
            Ok(())
        }
        KeysCommand::Delete { key } => {
            let (id, name) = resolve_key(api, &key).await?;
            api.call(Method::DELETE, &format!("/ssh-keys/{id}"), &[], None, &[]).await?;
            if !json {
                writeln!(out, "Deleted the key {name}.")?;
            }
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Lists your SSH keys.
    List,
    /// Adds an OpenSSH public key (e.g. ~/.ssh/id_ed25519.pub).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
    },
    /// Deletes one of your keys (instances that have it keep it).
    Delete {
        /// The key's name or id.
        key: String,
    },
}

const KEY_HEADERS: [&str; 6] = ["NAME", "ALGORITHM", "FINGERPRINT", "COMMENT", "CREATED", "ID"];

fn key_row(k: &SshKeyView) -> Vec<String> {
    vec![
        k.name.clone(),
        k.algorithm.clone(),
        k.fingerprint.clone(),
        dash(&k.comment),
        k.created_at.clone(),
        k.id.to_string(),
    ]
}

async fn resolve_key(api: &Api, key: &str) -> Result<(String, String)> {
    let items = api.list_all("/ssh-keys", &[]).await?;
    let keys: Vec<SshKeyView> = typed(&items)?;
    if let Ok(id) = uuid::Uuid::parse_str(key) {
        let name = keys.iter().find(|k| k.id.to_string() == id.to_string()).map(|k| k.name.clone());
        return Ok((id.to_string(), name.unwrap_or_else(|| id.to_string())));
    }
    let matching: Vec<&SshKeyView> = keys.iter().filter(|k| k.name == key).collect();
    match matching.as_slice() {
        [one] => Ok((one.id.to_string(), one.name.clone())),
        [] => Err(CliError::new(
            exit::NOT_FOUND,
            format!("You have no SSH key named {key:?} (`gpuctl keys list` shows them)."),
        )),
        many => Err(CliError::new(
            exit::INVALID,
            format!(
                "{} of your keys are named {key:?}; give one's id: {}.",
                many.len(),
                many.iter().map(|k| k.id.to_string()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// An instance's id and name from its name or id.
async fn resolve_instance(api: &Api, instance: &str) -> Result<(String, String)> {
    if let Ok(id) = uuid::Uuid::parse_str(instance) {
        return Ok((id.to_string(), id.to_string()));
    }
    let items = api.list_all("/instances", &[("name", instance)]).await?;
    let views: Vec<InstanceView> = typed(&items)?;
    let matching: Vec<&InstanceView> = views.iter().filter(|v| v.name == instance).collect();
    match matching.as_slice() {
        [one] => Ok((one.id.to_string(), one.name.clone())),
        [] => Err(CliError::new(
            exit::NOT_FOUND,
            format!("No instance is named {instance:?} (`gpuctl instances list` shows them)."),
        )),
        many => Err(CliError::new(
            exit::INVALID,
            format!(
                "{} instances are named {instance:?}; give one's id: {}.",
                many.len(),
                many.iter().map(|v| v.id.to_string()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

async fn instances_command(
    api: &Api,
    command: InstancesCommand,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    match command {
        InstancesCommand::List { state, name } => {
            let state = state.map(|s| format!("{s:?}"));
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(s) = &state {
                query.push(("state", s));
            }
            if let Some(n) = &name {
                query.push(("name", n));
            }
            let items = api.list_all("/instances", &query).await?;
            if json {
                return print_items(out, &items);
            }
            print_instances(out, &typed(&items)?)
        }
        InstancesCommand::Show { instance } => {
            let (id, _) = resolve_instance(api, &instance).await?;
            let text = api.get(&format!("/instances/{id}"), &[]).await?;
            if json {
                return print_json(out, &text);
            }
            print_detail(out, &decode(&text)?)
        }
        InstancesCommand::Launch(args) => launch(api, args, json, out, err).await,
        InstancesCommand::Stop(args) => {
            change(api, Change::Power(PowerAction::Stop), args, json, out, err).await
        }
        InstancesCommand::Start(args) => {
            change(api, Change::Power(PowerAction::Start), args, json, out, err).await
        }
        InstancesCommand::Reboot(args) => {
            change(api, Change::Power(PowerAction::Reboot), args, json, out, err).await
        }
        InstancesCommand::PowerOff(args) => {
            change(api, Change::Power(PowerAction::PowerOff), args, json, out, err).await
        }
        InstancesCommand::Delete(args) => change(api, Change::Delete, args, json, out, err).await,
    }
}

async fn launch(
    api: &Api,
    args: LaunchArgs,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let mut ssh_keys = Vec::new();
    for key in &args.keys {
        let (id, _) = resolve_key(api, key).await?;
        let id = id.parse().map_err(|_| CliError::other(format!("{id} is not a key id.")))?;
        ssh_keys.push(id);
    }
    let user_data = match &args.user_data_file {
        Some(file) => read_bounded(file, MAX_USER_DATA, "user data")?,
        None => String::new(),
    };
    let create = InstanceCreate {
        name: args.name.clone(),
        instance_type: args.instance_type.clone(),
        count: args.count,
        placement: Default::default(),
        image: args.image.clone().unwrap_or_default(),
        idempotency_key: String::new(),
        ssh_keys,
        user_data,
        subnet: None,
        security_groups: Vec::new(),
    };
    let body = serde_json::to_value(&create)
        .map_err(|e| CliError::other(format!("Cannot encode the launch: {e}.")))?;
    let generated = args.idempotency_key.is_none();
    let key = args.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The same key on every attempt: a retry after a lost answer returns the instances the
    // first attempt made instead of launching more.
    let mut attempt = 0;
    let text = loop {
        attempt += 1;
        let sent = api
            .send(Method::POST, "/instances", &[], Some(&body), &[("Idempotency-Key", &key)])
            .await;
        let retry_in = match &sent {
            Ok(answer) if answer.status.is_success() => break answer.body.clone(),
            Ok(answer) if matches!(answer.status.as_u16(), 429 | 502 | 503 | 504) => {
                api::retry_after(answer, 10).unwrap_or(2)
            }
            Ok(answer) => return Err(api_error(answer)),
            Err(e) if e.code == exit::UNAVAILABLE => 2,
            Err(_) => 0,
        };
        if attempt >= 3 || retry_in == 0 {
            let mut e = match sent {
                Ok(answer) => api_error(&answer),
                Err(e) => e,
            };
            if generated {
                e.message = format!(
                    "{} To retry without launching twice: --idempotency-key {key}",
                    e.message
                );
            }
            return Err(e);
        }
        writeln!(err, "gpuctl: the launch did not go through; retrying in {retry_in} s")?;
        tokio::time::sleep(Duration::from_secs(retry_in)).await;
    };
    let launched: Vec<InstanceView> = decode(&text)?;
    if !args.wait {
        if json {
            return print_json(out, &text);
        }
        return print_instances(out, &launched);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut finals = Vec::new();
    let mut views = Vec::new();
    for view in &launched {
        let last = wait_for(
            api,
            &view.id.to_string(),
            &view.name,
            view.state,
            Target::State(InstanceState::Running),
            deadline,
            args.timeout,
            err,
        )
        .await?;
        if let Some(value) = last {
            views.push(serde_json::from_value::<InstanceView>(value.clone()).map_err(|e| {
                CliError::other(format!("The portal's answer is not an instance ({e})."))
            })?);
            finals.push(value);
        }
    }
    if json {
        return print_items(out, &finals);
    }
    print_instances(out, &views)
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Power(PowerAction),
    Delete,
}

async fn change(
    api: &Api,
    change: Change,
    args: ChangeArgs,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let (id, _) = resolve_instance(api, &args.instance).await?;
    let (text, target) = match change {
        Change::Power(action) => {
            let path = format!("/instances/{id}/{}", action.as_str());
            let target = match action {
                PowerAction::Start | PowerAction::Reboot => InstanceState::Running,
                PowerAction::Stop | PowerAction::PowerOff => InstanceState::Stopped,
            };
            (api.call(Method::POST, &path, &[], None, &[]).await?, Target::State(target))
        }
        Change::Delete => {
            let path = format!("/instances/{id}");
            (api.call(Method::DELETE, &path, &[], None, &[]).await?, Target::Gone)
        }
    };
    let view: InstanceView = decode(&text)?;
    if !args.wait {
        if json {
            return print_json(out, &text);
        }
        return print_instances(out, &[view]);
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let last =
        wait_for(api, &id, &view.name, view.state, target, deadline, args.timeout, err).await?;
    match last {
        Some(value) => {
            if json {
                writeln!(out, "{}", api::pretty(&value))?;
                return Ok(());
            }
            let view: InstanceView = serde_json::from_value(value).map_err(|e| {
                CliError::other(format!("The portal's answer is not an instance ({e})."))
            })?;
            print_instances(out, &[view])
        }
        None => {
            if !json {
                writeln!(out, "Deleted {}.", view.name)?;
            }
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    State(InstanceState),
    /// Deleted, or no longer found.
    Gone,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::State(s) => write!(f, "{s:?}"),
            Target::Gone => f.write_str("gone"),
        }
    }
}

/// The states an instance passes through on its way somewhere.
fn transitional(state: InstanceState) -> bool {
    matches!(
        state,
        InstanceState::Provisioning
            | InstanceState::Stopping
            | InstanceState::Starting
            | InstanceState::Rebooting
            | InstanceState::Deleting
    )
}

/// Polls an instance every second until it reaches `target`; reports its state changes on
/// `err`. The instance's last JSON (none once it is gone).
#[allow(clippy::too_many_arguments)]
async fn wait_for(
    api: &Api,
    id: &str,
    name: &str,
    first: InstanceState,
    target: Target,
    deadline: Instant,
    timeout_secs: u64,
    err: &mut dyn Write,
) -> Result<Option<Value>> {
    let started = Instant::now();
    let mut last = first;
    let mut moving = transitional(first);
    let mut unreachable_said = false;
    writeln!(err, "{name}: {first:?}, waiting until {target}")?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let elapsed = started.elapsed().as_secs();
        match api.send(Method::GET, &format!("/instances/{id}"), &[], None, &[]).await {
            Err(e) if e.code == exit::UNAVAILABLE => {
                if !unreachable_said {
                    writeln!(err, "{name}: {} (still waiting)", e.message)?;
                    unreachable_said = true;
                }
            }
            Err(e) => return Err(e),
            Ok(answer) if answer.status == StatusCode::NOT_FOUND && target == Target::Gone => {
                writeln!(err, "{name}: gone ({elapsed} s)")?;
                return Ok(None);
            }
            Ok(answer) if matches!(answer.status.as_u16(), 429 | 502 | 503 | 504) => {}
            Ok(answer) if !answer.status.is_success() => return Err(api_error(&answer)),
            Ok(answer) => {
                unreachable_said = false;
                let mut value: Value = decode(&answer.body)?;
                let detail: InstanceDetail =
                    serde_json::from_value(value.clone()).map_err(|e| {
                        CliError::other(format!("The portal's answer is not an instance ({e})."))
                    })?;
                let state = detail.instance.state;
                if state != last {
                    writeln!(err, "{name}: {state:?} ({elapsed} s)")?;
                    last = state;
                }
                let instance = value.get_mut("instance").map(Value::take).unwrap_or(Value::Null);
                let why = detail.instance.message.map(|m| format!(": {m}")).unwrap_or_default();
                match (state, target) {
                    (s, Target::State(t)) if s == t => return Ok(Some(instance)),
                    (InstanceState::Deleted, Target::Gone) => return Ok(Some(instance)),
                    (InstanceState::Failed, _) => {
                        return Err(CliError::new(exit::WAIT, format!("{name} failed{why}")));
                    }
                    (InstanceState::Deleted, _) => {
                        return Err(CliError::new(exit::WAIT, format!("{name} was deleted{why}")));
                    }
                    (s, Target::State(t)) if moving && !transitional(s) => {
                        return Err(CliError::new(
                            exit::WAIT,
                            format!(
                                "{name} is {s:?} again, not {t:?}: the change did not take{why}"
                            ),
                        ));
                    }
                    (s, _) => moving |= transitional(s),
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(CliError::new(
                exit::WAIT,
                format!(
                    "Timed out after {timeout_secs} s waiting for {name} to be {target} (it is \
                     {last:?})."
                ),
            ));
        }
    }
}

async fn ssh(
    api: &Api,
    instance: &str,
    dry_run: bool,
    extra: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<()> {
    let (id, _) = resolve_instance(api, instance).await?;
    let detail: InstanceDetail = decode(&api.get(&format!("/instances/{id}"), &[]).await?)?;
    let name = &detail.instance.name;
    let Some(user) = detail.default_user.as_deref().filter(|u| !u.is_empty()) else {
        return Err(CliError::new(
            exit::INVALID,
            format!("{name} has no image with a default user to sign in as."),
        ));
    };
    let Some(address) = detail.ports.iter().map(|p| p.ip.as_str()).find(|ip| !ip.is_empty()) else {
        return Err(CliError::new(
            exit::INVALID,
            format!("{name} has no address yet (it is {:?}).", detail.instance.state),
        ));
    };
    if detail.instance.state != InstanceState::Running {
        writeln!(err, "gpuctl: {name} is {:?}; ssh may not connect.", detail.instance.state)?;
    }
    let mut argv = vec![format!("{user}@{address}")];
    argv.extend(extra.iter().cloned());
    if dry_run {
        let words: Vec<String> =
            std::iter::once("ssh".to_owned()).chain(argv.iter().map(|a| quote(a))).collect();
        writeln!(out, "{}", words.join(" "))?;
        return Ok(());
    }
    out.flush()?;
    err.flush()?;
    let mut command = std::process::Command::new("ssh");
    command.args(&argv);
    #[cfg(unix)]
    {
        let e = std::os::unix::process::CommandExt::exec(&mut command);
        Err(CliError::other(format!("Cannot run ssh: {e}.")))
    }
    #[cfg(not(unix))]
    {
        let status =
            command.status().map_err(|e| CliError::other(format!("Cannot run ssh: {e}.")))?;
        match status.code() {
            Some(0) => Ok(()),
            code => Err(CliError::new(code.unwrap_or(exit::OTHER), "ssh failed.")),
        }
    }
}

/// A word as a POSIX shell reads it back.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.chars().all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

fn print_instances(out: &mut dyn Write, views: &[InstanceView]) -> Result<()> {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                format!("{:?}", v.state),
                v.instance_type.clone(),
                gpus(v.gpu_count, &v.gpu_model),
                v.host_name.clone().unwrap_or_else(|| "-".to_owned()),
                v.image.clone().unwrap_or_else(|| "-".to_owned()),
                v.created_at.clone(),
                v.id.to_string(),
            ]
        })
        .collect();
    table::print(out, &["NAME", "STATE", "TYPE", "GPUS", "HOST", "IMAGE", "CREATED", "ID"], &rows)?;
    Ok(())
}

fn print_detail(out: &mut dyn Write, d: &InstanceDetail) -> Result<()> {
    let v = &d.instance;
    let addresses: Vec<&str> = d.ports.iter().map(|p| p.ip.as_str()).collect();
    let mut pairs = vec![
        ("name", v.name.clone()),
        ("id", v.id.to_string()),
        ("state", format!("{:?}", v.state)),
        ("type", v.instance_type.clone()),
        ("gpus", gpus(v.gpu_count, &v.gpu_model)),
        ("vcpus", v.vcpus.to_string()),
        ("memory", format!("{} GiB", v.memory_gib)),
        ("host", d.host.clone().unwrap_or_else(|| "-".to_owned())),
        ("image", d.image.clone().unwrap_or_else(|| "-".to_owned())),
        ("user", d.default_user.clone().unwrap_or_else(|| "-".to_owned())),
        ("addresses", dash(&addresses.join(", "))),
        ("ssh", d.ssh_command.clone().unwrap_or_else(|| "-".to_owned())),
        ("ssh keys", dash(&d.ssh_keys.join(", "))),
        ("created", v.created_at.clone()),
    ];
    if let Some(message) = &v.message {
        pairs.push(("message", message.clone()));
    }
    table::pairs(out, &pairs)?;
    Ok(())
}

fn print_usage(out: &mut dyn Write, u: &UsageSummary) -> Result<()> {
    let f = &u.format;
    let mut pairs = vec![
        ("tenant", u.tenant_name.clone()),
        ("month", format!("{}{}", u.month, if u.current { " (to date)" } else { "" })),
        ("total", f.cents(u.total_cents)),
    ];
    if u.current {
        pairs.push(("forecast", f.cents(u.forecast_cents)));
        pairs.push(("now per hour", f.price(u.burn_micros_per_hour, "/h")));
    }
    if let Some(budget) = &u.budget {
        pairs.push((
            "budget",
            format!("{} ({}% used)", f.cents(budget.monthly_cents), budget.used_percent),
        ));
    }
    if let Some(credit) = u.credit_cents {
        pairs.push(("credit left", f.cents(credit)));
    }
    table::pairs(out, &pairs)?;
    if !u.by_instance.is_empty() {
        writeln!(out)?;
        let rows: Vec<Vec<String>> = u
            .by_instance
            .iter()
            .map(|l| vec![l.label.clone(), f.hours(l.seconds), f.cents(l.cents)])
            .collect();
        table::print(out, &["INSTANCE", "HOURS", "COST"], &rows)?;
    }
    Ok(())
}

fn print_invoice(out: &mut dyn Write, i: &Invoice) -> Result<()> {
    let f = &i.format;
    let rows: Vec<Vec<String>> = i
        .lines
        .iter()
        .map(|l| {
            vec![
                l.instance_name.clone(),
                l.item.clone(),
                l.quantity.to_string(),
                f.hours(l.seconds),
                f.price(l.micros_per_hour, "/h"),
                f.cents(l.cents),
            ]
        })
        .collect();
    table::print(out, &["INSTANCE", "ITEM", "QTY", "HOURS", "PRICE", "AMOUNT"], &rows)?;
    writeln!(out)?;
    table::pairs(
        out,
        &[
            ("tenant", i.tenant_name.clone()),
            ("month", format!("{}{}", i.month, if i.draft { " (draft)" } else { "" })),
            ("total", f.cents(i.total_cents)),
        ],
    )?;
    Ok(())
}

fn gpus(count: u32, model: &str) -> String {
    if count == 0 { "-".to_owned() } else { format!("{count} × {model}") }
}

fn dash(text: &str) -> String {
    if text.is_empty() { "-".to_owned() } else { text.to_owned() }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// An API answer, pretty.
fn print_json(out: &mut dyn Write, text: &str) -> Result<()> {
    let value: Value = decode(text)?;
    writeln!(out, "{}", api::pretty(&value))?;
    Ok(())
}

/// A list's items (every page), as one JSON array.
fn print_items(out: &mut dyn Write, items: &[Value]) -> Result<()> {
    writeln!(out, "{}", api::pretty(items))?;
    Ok(())
}

fn typed<T: DeserializeOwned>(items: &[Value]) -> Result<Vec<T>> {
    items
        .iter()
        .map(|v| {
            serde_json::from_value(v.clone()).map_err(|e| {
                CliError::other(format!(
                    "The portal's answer is not what this gpuctl understands ({e}); is gpuctl \
                     as new as the portal?"
                ))
            })
        })
        .collect()
}

/// A small text file, refused when larger than `max` bytes.
fn read_bounded(path: &Path, max: usize, what: &str) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| {
        CliError::new(exit::INVALID, format!("Cannot read {}: {e}.", path.display()))
    })?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|e| {
        CliError::new(exit::INVALID, format!("Cannot read {}: {e}.", path.display()))
    })?;
    if bytes.len() > max {
        return Err(CliError::new(
            exit::INVALID,
            format!("The {what} in {} is larger than {} KiB.", path.display(), max / 1024),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| CliError::new(exit::INVALID, format!("{} is not UTF-8 text.", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn months_and_states_parse() {
        assert!(month("2026-01").is_ok());
        assert!(month("2026-13").is_err());
        assert!(month("2026-1").is_err());
        assert!(month("../../x").is_err());
        assert_eq!(state("Running"), Ok(InstanceState::Running));
        assert_eq!(state("stopped"), Ok(InstanceState::Stopped));
        assert!(state("nope").is_err());
    }

    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(quote("ubuntu@10.0.0.2"), "ubuntu@10.0.0.2");
        assert_eq!(quote("-o StrictHostKeyChecking=no"), "'-o StrictHostKeyChecking=no'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
