//! Call records written in the order the calls produced them, off the
//! async runtime: one thread owns the writes, so a record's insert always
//! lands before its updates and a slow disk never stalls a call.
//!
//! Writes are batched: the thread takes whatever has queued up (up to
//! [`BATCH`]) and commits it as one transaction. At a few hundred calls a
//! second each call's half-dozen writes would otherwise be as many
//! commits; batched, the cost per write falls with the load.

use std::sync::mpsc;
use std::sync::Arc;

pub use crate::store::CallWrite as StoreWrite;
use crate::store::Store;

/// Most writes in one transaction: bounds how long readers (the REST API)
/// wait behind a commit.
const BATCH: usize = 512;
/// How long the first write of a batch waits for others.
const GATHER: std::time::Duration = std::time::Duration::from_millis(20);

/// Hands writes to the writer thread. The thread ends (after draining
/// what it was given) when the last sender is dropped.
#[derive(Clone)]
pub struct RecordWriter {
    tx: mpsc::Sender<StoreWrite>,
}

impl RecordWriter {
    pub fn start(store: Arc<dyn Store>) -> RecordWriter {
        let (tx, rx) = mpsc::channel::<StoreWrite>();
        let spawned = std::thread::Builder::new().name("call-records".into()).spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            while let Ok(first) = rx.recv() {
                batch.push(first);
                // Let a busy moment's writes gather: records lag by at most
                // this, and a commit serves many calls.
                let until = std::time::Instant::now() + GATHER;
                while batch.len() < BATCH {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(w) => batch.push(w),
                        Err(_) => break,
                    }
                }
                write(&*store, &batch);
                batch.clear();
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the call record writer: records will not be written");
        }
        RecordWriter { tx }
    }

    pub fn send(&self, write: StoreWrite) {
        let _ = self.tx.send(write);
    }
}

/// One transaction for the batch; if it fails, each write on its own, so
/// that one bad write costs only itself.
fn write(store: &dyn Store, batch: &[StoreWrite]) {
    if store.write_calls(batch).is_ok() {
        return;
    }
    for w in batch {
        if let Err(e) = store.write_calls(std::slice::from_ref(w)) {
            // The call goes on; the record is what is lost, and said so.
            tracing::error!(error = %e, write = ?w, "call record not written");
        }
    }
}
