//! A VM's serial console as every backend hands it out: output bytes (what the guest printed
//! since it last started, then what it prints) and an input channel for keystrokes. The
//! session ends when either side is dropped.

use tokio::sync::mpsc;

/// The most a new session is given of what the guest printed before it connected.
pub const HISTORY_BYTES: usize = 64 * 1024;
/// The largest input chunk a caller may send at once.
pub const INPUT_CHUNK_BYTES: usize = 4 * 1024;
/// Output chunks queued for a slow reader before the backend waits for it.
const OUTPUT_QUEUE: usize = 64;
/// Input chunks queued before a fast typist waits.
const INPUT_QUEUE: usize = 16;

pub struct ConsoleSession {
    pub output: mpsc::Receiver<Vec<u8>>,
    pub input: mpsc::Sender<Vec<u8>>,
}

/// The backend's ends of a new session: where it writes output, where it reads input.
pub struct ConsoleEnds {
    pub output: mpsc::Sender<Vec<u8>>,
    pub input: mpsc::Receiver<Vec<u8>>,
}

/// A new session and the backend's ends of it.
pub fn session() -> (ConsoleSession, ConsoleEnds) {
    let (output_tx, output_rx) = mpsc::channel(OUTPUT_QUEUE);
    let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
    (
        ConsoleSession { output: output_rx, input: input_tx },
        ConsoleEnds { output: output_tx, input: input_rx },
    )
}

/// The last [`HISTORY_BYTES`] of `bytes` (a console log may be longer).
pub fn tail(bytes: &[u8]) -> &[u8] {
    &bytes[bytes.len().saturating_sub(HISTORY_BYTES)..]
}
