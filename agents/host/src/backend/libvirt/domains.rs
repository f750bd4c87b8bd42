//! Idempotent domain operations over one libvirt connection, blocking (call them from
//! `spawn_blocking`). Domains are named by their VM id. libvirt errors become
//! [`DriverError`]s with a sentence: a lost connection is `Unavailable` (retry), a refused
//! operation `FailedPrecondition`, anything else `Internal`.

use std::thread;
use std::time::{Duration, Instant};

use agent_common::DriverError;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::enumutil::Enum;
use virt::error::{Error, ErrorNumber};

/// How often a shutting-down guest is polled.
const POLL: Duration = Duration::from_millis(200);

/// Defines (or redefines) from `xml`, validated against libvirt's schema.
pub fn define(conn: &Connect, vm_id: &str, xml: &str) -> Result<(), DriverError> {
    conn.define_domain_xml_flags(xml, virt::sys::VIR_DOMAIN_DEFINE_VALIDATE).map(drop).map_err(
        |e| {
            let what = format!("defining domain {vm_id}");
            match code(&e) {
                // Our renderer wrote XML libvirt refuses: a bug here, not the caller's.
                Some(ErrorNumber::XmlError | ErrorNumber::XmlDetail) => DriverError::Internal(
                    format!("{what}: libvirt refused the domain XML: {}", e.message()),
                ),
                _ => map(&what, &e),
            }
        },
    )
}

/// Starts the domain; a running one is left alone.
pub fn start(conn: &Connect, vm_id: &str) -> Result<(), DriverError> {
    let what = format!("starting domain {vm_id}");
    let Some(domain) = lookup(conn, vm_id, &what)? else {
        return Err(DriverError::FailedPrecondition(format!(
            "domain {vm_id} is not defined; define it first"
        )));
    };
    if domain.is_active().map_err(|e| map(&what, &e))? {
        return Ok(());
    }
    domain.create().map(drop).map_err(|e| map(&what, &e))
}

/// The running domain's XML, as libvirt completed it (device names and addresses included).
pub fn xml(conn: &Connect, vm_id: &str) -> Result<String, DriverError> {
    let what = format!("reading domain {vm_id}");
    let Some(domain) = lookup(conn, vm_id, &what)? else {
        return Err(DriverError::FailedPrecondition(format!("domain {vm_id} is not defined")));
    };
    domain.xml_desc(0).map_err(|e| map(&what, &e))
}

/// Asks the guest to shut down (ACPI), waits up to `timeout`, then powers it off. An absent
/// or stopped domain is fine.
pub fn stop(conn: &Connect, vm_id: &str, timeout: Duration) -> Result<(), DriverError> {
    let what = format!("stopping domain {vm_id}");
    let Some(domain) = lookup(conn, vm_id, &what)? else { return Ok(()) };
    if !domain.is_active().map_err(|e| map(&what, &e))? {
        return Ok(());
    }
    // A guest that ignores ACPI (or has not booted far enough) is powered off below anyway.
    if let Err(e) = domain.shutdown() {
        tracing::warn!(vm_id, error = e.message(), "ACPI shutdown refused; powering off");
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !domain.is_active().map_err(|e| map(&what, &e))? {
            return Ok(());
        }
        thread::sleep(POLL);
    }
    destroy(&domain, &what)
}

/// `virDomainDestroy`; a domain that is not running (or stopped meanwhile) is fine.
fn destroy(domain: &Domain, what: &str) -> Result<(), DriverError> {
    match domain.destroy() {
        Ok(()) => Ok(()),
        Err(e) if code(&e) == Some(ErrorNumber::OperationInvalid) => Ok(()),
        Err(e) => Err(map(what, &e)),
    }
}

/// Asks the running guest to restart (ACPI, or the guest agent if the guest has one);
/// `FailedPrecondition` if the domain is not defined or not running.
pub fn reboot(conn: &Connect, vm_id: &str) -> Result<(), DriverError> {
    let what = format!("rebooting domain {vm_id}");
    let not_running = || {
        DriverError::FailedPrecondition(format!("domain {vm_id} is not running; start it first"))
    };
    let domain = lookup(conn, vm_id, &what)?.ok_or_else(not_running)?;
    if !domain.is_active().map_err(|e| map(&what, &e))? {
        return Err(not_running());
    }
    domain.reboot(0).map_err(|e| map(&what, &e))
}

/// Powers the domain off at once (`virDomainDestroy`); an absent or stopped domain is fine.
pub fn power_off(conn: &Connect, vm_id: &str) -> Result<(), DriverError> {
    let what = format!("powering off domain {vm_id}");
    let Some(domain) = lookup(conn, vm_id, &what)? else { return Ok(()) };
    destroy(&domain, &what)
}

/// Undefines the stopped domain; an absent one is fine, a running one refused. Returns
/// whether it existed.
pub fn undefine(conn: &Connect, vm_id: &str) -> Result<bool, DriverError> {
    let what = format!("undefining domain {vm_id}");
    let Some(domain) = lookup(conn, vm_id, &what)? else { return Ok(false) };
    if domain.is_active().map_err(|e| map(&what, &e))? {
        return Err(DriverError::FailedPrecondition(format!(
            "domain {vm_id} is running; stop it first"
        )));
    }
    domain.undefine().map_err(|e| map(&what, &e))?;
    Ok(true)
}

/// Whether the domain is defined and running: `None` if it is not defined.
pub fn is_running(conn: &Connect, vm_id: &str) -> Result<Option<bool>, DriverError> {
    let what = format!("reading domain {vm_id}");
    match lookup(conn, vm_id, &what)? {
        None => Ok(None),
        Some(domain) => domain.is_active().map(Some).map_err(|e| map(&what, &e)),
    }
}

fn lookup(conn: &Connect, vm_id: &str, what: &str) -> Result<Option<Domain>, DriverError> {
    match conn.lookup_domain_by_name(vm_id) {
        Ok(domain) => Ok(Some(domain)),
        Err(e) if code(&e) == Some(ErrorNumber::NoDomain) => Ok(None),
        Err(e) => Err(map(what, &e)),
    }
}

fn code(e: &Error) -> Option<ErrorNumber> {
    match e.code() {
        Enum::Known(code) => Some(code),
        Enum::Unknown(_) => None,
    }
}

fn map(what: &str, e: &Error) -> DriverError {
    let message = format!("{what}: {}", e.message());
    match code(e) {
        Some(
            ErrorNumber::NoConnect
            | ErrorNumber::SystemError
            | ErrorNumber::OperationTimeout
            | ErrorNumber::AuthFailed
            | ErrorNumber::InvalidConn,
        ) => DriverError::Unavailable(format!("{message}; libvirt is unreachable, retry")),
        Some(ErrorNumber::OperationInvalid) => DriverError::FailedPrecondition(message),
        _ => DriverError::Internal(message),
    }
}
