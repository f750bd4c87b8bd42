//! Where `gpuctl login` keeps the portal's URL and the API token: `config.toml` in
//! `$XDG_CONFIG_HOME/gpuctl` (or `~/.config/gpuctl`), readable by its owner only.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::CliError;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    pub url: String,
    pub token: String,
}

/// The config file: `--config`, else `$XDG_CONFIG_HOME/gpuctl/config.toml`, else
/// `$HOME/.config/gpuctl/config.toml`.
pub fn path(flag: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".config"),
            None => {
                return Err(CliError::other(
                    "Neither XDG_CONFIG_HOME nor HOME is set; pass --config <file>.",
                ));
            }
        },
    };
    Ok(base.join("gpuctl").join("config.toml"))
}

/// The stored configuration; none when there is no file.
pub fn load(path: &Path) -> Result<Option<Config>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::other(format!("Cannot read {}: {e}.", path.display())));
        }
    };
    // toml's error quotes the offending line, which may hold the token: not shown.
    toml::from_str(&text).map(Some).map_err(|_| {
        CliError::other(format!(
            "{} is not a gpuctl configuration; run `gpuctl login` again.",
            path.display()
        ))
    })
}

/// Writes the configuration readable by its owner only: a new file created with mode 0600
/// (never a wider one narrowed afterwards), renamed over the old one.
pub fn save(path: &Path, config: &Config) -> Result<(), CliError> {
    let fail =
        |e: std::io::Error| CliError::other(format!("Cannot write {}: {e}.", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(fail)?;
    }
    let text = toml::to_string(config)
        .map_err(|e| CliError::other(format!("Cannot encode the configuration: {e}.")))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&temp, path)) {
        let _ = std::fs::remove_file(&temp);
        return Err(fail(e));
    }
    Ok(())
}

/// Removes the configuration; whether there was one.
pub fn remove(path: &Path) -> Result<bool, CliError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CliError::other(format!("Cannot remove {}: {e}.", path.display()))),
    }
}
