//! The configuration file (`--config FILE` or `PORTAL_CONFIG`): TOML whose keys are the long
//! flags without their dashes (`listen = "0.0.0.0:3000"`, `database-url = "postgres://…"`,
//! `trusted-proxies = ["10.0.0.0/8"]`, `secure-cookies = true`). A flag wins over the
//! environment, which wins over the file, which wins over the built-in defaults: the file's
//! values become the defaults clap falls back to.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches};

use crate::config::Config;

/// Settings the file may not hold: what only makes sense per invocation.
const NOT_IN_FILE: [&str; 2] = ["config", "print-routes"];

/// Why there is no configuration: clap's verdict on the command line (help and version
/// included), or what is wrong with the file.
#[derive(Debug)]
pub enum LoadError {
    Arguments(clap::Error),
    File(String),
}

/// The configuration from the command line, the environment and the file.
pub fn load() -> Result<Config, LoadError> {
    load_from(std::env::args_os().collect(), std::env::var_os("PORTAL_CONFIG"))
}

fn load_from(args: Vec<OsString>, from_env: Option<OsString>) -> Result<Config, LoadError> {
    let file = LoadError::File;
    let mut command = Config::command();
    if let Some(path) = config_path(&args).or(from_env.map(PathBuf::from)) {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            file(format!("cannot read the configuration file {}: {e}", path.display()))
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            file(format!(
                "the configuration file {} is not valid TOML: {}",
                path.display(),
                e.message()
            ))
        })?;
        for (key, value) in table {
            let id = command
                .get_arguments()
                .find(|a| {
                    a.get_long() == Some(key.as_str()) && !NOT_IN_FILE.contains(&key.as_str())
                })
                .map(|a| a.get_id().clone())
                .ok_or_else(|| file(unknown(&path, &key, &command)))?;
            let values = values(&value).ok_or_else(|| {
                file(format!(
                    "`{key}` in {} must be a string, a number, true/false or a list of those",
                    path.display()
                ))
            })?;
            command = command.mut_arg(id, |arg| arg.default_values(values));
        }
    }
    let matches = command.try_get_matches_from(args).map_err(LoadError::Arguments)?;
    Config::from_arg_matches(&matches).map_err(LoadError::Arguments)
}

/// `--config FILE` or `--config=FILE` on the command line.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}

fn values(value: &toml::Value) -> Option<Vec<String>> {
    match value {
        toml::Value::String(s) => Some(vec![s.clone()]),
        toml::Value::Integer(n) => Some(vec![n.to_string()]),
        toml::Value::Float(n) => Some(vec![n.to_string()]),
        toml::Value::Boolean(b) => Some(vec![b.to_string()]),
        toml::Value::Array(items) => {
            items.iter().map(|v| values(v).filter(|v| v.len() == 1)?.pop()).collect()
        }
        _ => None,
    }
}

fn unknown(path: &std::path::Path, key: &str, command: &clap::Command) -> String {
    let known: Vec<&str> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| !NOT_IN_FILE.contains(l) && *l != "help" && *l != "version")
        .collect();
    format!(
        "`{key}` in {} is not a setting; use the long flags without dashes: {}",
        path.display(),
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_with(file: &str, args: &[&str]) -> Result<Config, String> {
        let message = |e: LoadError| match e {
            LoadError::Arguments(e) => e.render().to_string(),
            LoadError::File(m) => m,
        };
        // Tests run in parallel: each call gets its own file.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("portal-config-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["portal-server".into(), "--config".into()];
        argv.push(path.clone().into());
        argv.extend(args.iter().map(OsString::from));
        let loaded = load_from(argv, None).map_err(message);
        let _ = std::fs::remove_file(path);
        loaded
    }

    #[test]
    fn the_file_sets_what_flags_do_not() {
        let file = "listen = \"127.0.0.1:4000\"\nsim-scalable-units = 3\nsecure-cookies = true\n\
                    trusted-proxies = [\"10.0.0.0/8\", \"192.168.1.1\"]\ncurrency = \"EUR\"\n";
        let config = load_with(file, &[]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(config.sim_scalable_units, 3);
        assert!(config.secure_cookies);
        assert_eq!(config.trusted_proxies.len(), 2);
        assert_eq!(config.currency, "EUR");
        // A flag wins over the file.
        let config = load_with(file, &["--listen", "127.0.0.1:5000"]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:5000");
    }

    #[test]
    fn bad_files_are_refused_with_a_sentence() {
        let unknown = load_with("lisen = \"x\"\n", &[]).unwrap_err();
        assert!(unknown.starts_with("`lisen` in ") && unknown.contains("listen"), "{unknown}");
        let invalid = load_with("listen = \"not an address\"\n", &[]).unwrap_err();
        assert!(invalid.contains("not an address"), "{invalid}");
        let broken = load_with("listen = \n", &[]).unwrap_err();
        assert!(broken.contains("not valid TOML"), "{broken}");
        let nested = load_with("[listen]\nx = 1\n", &[]).unwrap_err();
        assert!(nested.contains("must be a string"), "{nested}");
        assert!(load_with("print-routes = true\n", &[]).is_err());
    }
}
