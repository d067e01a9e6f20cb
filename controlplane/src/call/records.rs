//! Call records written in the order the calls produced them, off the
//! async runtime: one thread owns the writes, so a record's insert always
//! lands before its updates and a slow disk never stalls a call.

use std::sync::mpsc;
use std::sync::Arc;

use crate::store::{CallRecord, CallSid, CallUpdate, Store};

/// One write for the store.
#[derive(Debug)]
pub enum StoreWrite {
    Insert(Box<CallRecord>),
    Update(CallSid, Box<CallUpdate>),
}

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
            for write in rx {
                let result = match &write {
                    StoreWrite::Insert(record) => store.insert_call(record),
                    StoreWrite::Update(sid, update) => store.update_call(sid, update).map(|_| ()),
                };
                if let Err(e) = result {
                    // The call goes on; the record is what is lost, and said so.
                    tracing::error!(error = %e, ?write, "call record not written");
                }
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
