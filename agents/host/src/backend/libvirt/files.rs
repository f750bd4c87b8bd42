//! A VM's files in the state directory: its qcow2 copy-on-write overlay over the image
//! store's base image, its NoCloud config drive (an ISO labelled `cidata`), and its console
//! log. Creation and removal are idempotent; the tools run as child processes (blocking:
//! call from `spawn_blocking`).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use agent_common::DriverError;

use crate::model::VmSpec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmFiles {
    pub overlay: PathBuf,
    pub config_drive: PathBuf,
    pub console_log: PathBuf,
}

impl VmFiles {
    /// The files of VM `vm_id` (a lowercase UUID, so safe as a file name) under `state_dir`.
    pub fn new(state_dir: &Path, vm_id: &str) -> VmFiles {
        VmFiles {
            overlay: state_dir.join(format!("{vm_id}.qcow2")),
            config_drive: state_dir.join(format!("{vm_id}-cidata.iso")),
            console_log: state_dir.join(format!("{vm_id}.console.log")),
        }
    }

    /// Creates the overlay over `image_dir/<spec.image>` (the image store file the catalog
    /// names), sized `spec.disk_gib`, unless it exists (a redefine keeps the guest's disk),
    /// and (re)writes the config drive.
    pub fn create(&self, spec: &VmSpec, image_dir: &Path) -> Result<(), DriverError> {
        if let Some(dir) = self.overlay.parent() {
            fs::create_dir_all(dir).map_err(|e| io_error("create state directory", dir, &e))?;
        }
        if !self.overlay.exists() {
            let (base, format) = base_image(image_dir, &spec.image)?;
            let size = format!("{}G", spec.disk_gib);
            let mut qemu_img = Command::new("qemu-img");
            qemu_img.args(["create", "-q", "-f", "qcow2", "-F", format, "-b"]);
            qemu_img.arg(&base).arg(&self.overlay).arg(size);
            run(qemu_img, "qemu-img create")?;
        }
        super::config_drive::write(spec, &self.config_drive)
    }

    /// Removes the overlay, config drive and console log; absent files are fine.
    pub fn remove(&self) -> Result<(), DriverError> {
        for path in [&self.overlay, &self.config_drive, &self.console_log] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", path, &e)),
            }
        }
        Ok(())
    }
}

/// The image store's files a VM can boot (`.qcow2`, `.img`, `.raw`), sorted.
pub fn images(image_dir: &Path) -> Result<Vec<String>, DriverError> {
    let entries = fs::read_dir(image_dir).map_err(|e| io_error("list", image_dir, &e))?;
    let mut images: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| base_image_format(name).is_some() && !name.starts_with('.'))
        .collect();
    images.sort();
    Ok(images)
}

fn base_image_format(image: &str) -> Option<&'static str> {
    if image.ends_with(".qcow2") {
        Some("qcow2")
    } else if image.ends_with(".img") || image.ends_with(".raw") {
        Some("raw")
    } else {
        None
    }
}

/// `image_dir/<image>` and its format (`.qcow2`, or raw for `.img` and `.raw`, as the image
/// catalog allows); the name must be a plain file name (no path tricks).
fn base_image(image_dir: &Path, image: &str) -> Result<(PathBuf, &'static str), DriverError> {
    let plain = !image.is_empty()
        && !image.starts_with('.')
        && image.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !plain {
        return Err(DriverError::InvalidArgument(format!(
            "image {image:?} is not a plain file name (letters, digits, '.', '_', '-')"
        )));
    }
    let Some(format) = base_image_format(image) else {
        return Err(DriverError::InvalidArgument(format!(
            "image {image:?} is neither .qcow2 nor .img/.raw; name the image store file"
        )));
    };
    let base = image_dir.join(image);
    if !base.is_file() {
        return Err(DriverError::FailedPrecondition(format!(
            "image {image:?} is not in the image store ({} is missing); upload it first",
            base.display()
        )));
    }
    // Absolute: qemu-img records a relative backing path relative to the overlay's directory.
    Ok((fs::canonicalize(&base).map_err(|e| io_error("resolve", &base, &e))?, format))
}

/// Runs a tool; a tool that cannot start or fails is `Internal` with its stderr.
pub(super) fn run(mut command: Command, what: &str) -> Result<String, DriverError> {
    let output = command.output().map_err(|e| {
        DriverError::Internal(format!("{what} could not start: {e}; is the tool installed?"))
    })?;
    if !output.status.success() {
        return Err(DriverError::Internal(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub(super) fn io_error(what: &str, path: &Path, e: &std::io::Error) -> DriverError {
    DriverError::Internal(format!("could not {what} {}: {e}", path.display()))
}
