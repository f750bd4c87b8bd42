//! A domain's serial console. Output comes from the console log that virtlogd writes (every
//! byte the guest printed on ttyS0 since the domain started, whether or not anyone watches),
//! so any number of sessions can follow one VM; input goes through libvirt's console stream
//! (`virDomainOpenConsole`), opened on the first keystroke. Blocking libvirt and file calls
//! run on threads of their own, which end with the session.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use tokio::sync::mpsc;
use virt::connect::Connect;
use virt::stream::Stream;

use agent_common::DriverError;

use crate::console::{self, ConsoleSession, HISTORY_BYTES};

/// How often the log is checked for new output: fast enough to feel like typing.
const POLL: Duration = Duration::from_millis(50);

/// A session on domain `vm_id`'s console, its output read from `log`.
pub fn open(uri: &str, vm_id: &str, log: PathBuf) -> Result<ConsoleSession, DriverError> {
    let (session, ends) = console::session();
    let output = ends.output;
    let spawned = thread::Builder::new()
        .name(format!("console-log-{}", &vm_id[..8.min(vm_id.len())]))
        .spawn(move || follow_log(&log, &output));
    spawned.map_err(|e| DriverError::Unavailable(format!("cannot start a console reader: {e}")))?;
    let mut input = ends.input;
    let (uri, vm_id) = (uri.to_owned(), vm_id.to_owned());
    thread::Builder::new()
        .name(format!("console-in-{}", &vm_id[..8.min(vm_id.len())]))
        .spawn(move || {
            let mut writer = Writer { uri, vm_id, conn: None, stream: None };
            while let Some(keys) = input.blocking_recv() {
                writer.type_keys(&keys);
            }
            writer.close();
        })
        .map_err(|e| DriverError::Unavailable(format!("cannot start a console writer: {e}")))?;
    Ok(session)
}

/// Sends the log's last [`HISTORY_BYTES`], then what is appended, until the session ends. A
/// log that shrank was started over (the domain started again): follow it from its start.
fn follow_log(log: &std::path::Path, output: &mpsc::Sender<Vec<u8>>) {
    let mut offset: u64 = 0;
    let mut first = true;
    let mut buf = vec![0u8; 16 * 1024];
    while !output.is_closed() {
        match File::open(log) {
            Ok(mut file) => {
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                if len < offset {
                    offset = 0;
                }
                if first {
                    offset = len.saturating_sub(HISTORY_BYTES as u64);
                    first = false;
                }
                if len > offset && file.seek(SeekFrom::Start(offset)).is_ok() {
                    loop {
                        match file.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                offset += n as u64;
                                if output.blocking_send(buf[..n].to_vec()).is_err() {
                                    return;
                                }
                            }
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(_) => break,
                        }
                    }
                }
            }
            // Not written yet: the domain has not started since it was defined.
            Err(e) if e.kind() == ErrorKind::NotFound => first = false,
            Err(e) => {
                tracing::warn!(log = %log.display(), error = %e, "cannot read the console log");
            }
        }
        thread::sleep(POLL);
    }
}

/// The input side: a console stream opened on demand (and again after the domain
/// restarted, which closes it), its output drained by a thread so the guest never blocks.
/// On a connection of its own: the drain thread's blocking read holds its connection, which
/// must not be the one the backend's domain operations use.
struct Writer {
    uri: String,
    vm_id: String,
    conn: Option<Connect>,
    stream: Option<Stream>,
}

impl Writer {
    fn type_keys(&mut self, keys: &[u8]) {
        // One retry: a stream left from before a restart fails once, then a new one works.
        for _ in 0..2 {
            let stream = match self.stream.take() {
                Some(stream) => stream,
                None => match self.connect() {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::info!(vm_id = %self.vm_id, error = %e, "console input dropped");
                        return;
                    }
                },
            };
            if send_all(&stream, keys).is_ok() {
                self.stream = Some(stream);
                return;
            }
            let _ = stream.abort();
        }
    }

    fn connect(&mut self) -> Result<Stream, String> {
        if self.conn.is_none() {
            self.conn = Some(Connect::open(Some(&self.uri)).map_err(|e| e.message().to_owned())?);
        }
        let conn = self.conn.as_ref().expect("opened above");
        let domain = conn.lookup_domain_by_name(&self.vm_id).map_err(|e| e.message().to_owned())?;
        let stream = Stream::new(conn, 0).map_err(|e| e.message().to_owned())?;
        // FORCE: a console left open by an earlier agent (or `virsh console`) gives way.
        domain
            .open_console(None, &stream, virt::sys::VIR_DOMAIN_CONSOLE_FORCE)
            .map_err(|e| e.message().to_owned())?;
        let drain = stream.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(drain.recv(&mut buf), Ok(n) if n > 0) {}
        });
        Ok(stream)
    }

    fn close(&mut self) {
        // Ends the drain thread's blocking recv too.
        if let Some(stream) = self.stream.take() {
            let _ = stream.abort();
        }
        self.conn = None;
    }
}

fn send_all(stream: &Stream, mut bytes: &[u8]) -> Result<(), ()> {
    while !bytes.is_empty() {
        match stream.send(bytes) {
            Ok(n) if n > 0 => bytes = &bytes[n as usize..],
            _ => return Err(()),
        }
    }
    Ok(())
}
