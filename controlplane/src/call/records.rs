//! Call records written in the order the calls produced them, off the
//! async runtime: one thread owns the writes, so a record's insert always
//! lands before its updates and a slow disk never stalls a call.
//!
//! Writes are batched: the thread wakes every [`GATHER`], takes what has
//! queued up and commits it as one transaction. At a few hundred calls a
//! second each call's half-dozen writes would otherwise be as many commits,
//! and waking the thread for every write cost the call task more than the
//! write itself; queueing is now a push under a lock nobody holds for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use crate::store::CallWrite as StoreWrite;
use crate::store::{CallRecord, CallSid, CallUpdate, Store};

/// How long writes gather before they are committed: records lag by at
/// most about this.
const GATHER: Duration = Duration::from_millis(100);

/// Hands writes to the writer thread. The thread writes what is left and
/// ends once the last clone is dropped.
#[derive(Clone)]
pub struct RecordWriter {
    queue: Arc<Mutex<Vec<StoreWrite>>>,
}

impl RecordWriter {
    pub fn start(store: Arc<dyn Store>) -> RecordWriter {
        let queue: Arc<Mutex<Vec<StoreWrite>>> = Arc::default();
        let shared = queue.clone();
        let spawned = std::thread::Builder::new().name("call-records".into()).spawn(move || {
            let mut batch = Vec::new();
            loop {
                std::thread::sleep(GATHER);
                // Writers gone (only this thread holds the queue): last batch.
                let last = Arc::strong_count(&shared) == 1;
                std::mem::swap(&mut batch, &mut *shared.lock().unwrap_or_else(PoisonError::into_inner));
                if !batch.is_empty() {
                    write(&*store, &coalesce(std::mem::take(&mut batch)));
                }
                if last {
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the call record writer: records will not be written");
        }
        RecordWriter { queue }
    }

    pub fn send(&self, write: StoreWrite) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).push(write);
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

/// One write per call in the batch where there were several: updates folded
/// into the insert before them, or into one update (later fields win).
/// A call's writes keep their order; different calls' are independent.
fn coalesce(batch: Vec<StoreWrite>) -> Vec<StoreWrite> {
    let mut out: Vec<StoreWrite> = Vec::with_capacity(batch.len());
    let mut at: HashMap<CallSid, usize> = HashMap::with_capacity(batch.len());
    for w in batch {
        match w {
            StoreWrite::Insert(record) => {
                at.insert(record.sid.clone(), out.len());
                out.push(StoreWrite::Insert(record));
            }
            StoreWrite::Update(sid, update) => match at.get(&sid).map(|&i| &mut out[i]) {
                Some(StoreWrite::Insert(record)) => apply(record, &update),
                Some(StoreWrite::Update(_, earlier)) => merge(earlier, *update),
                None => {
                    at.insert(sid.clone(), out.len());
                    out.push(StoreWrite::Update(sid, update));
                }
            },
        }
    }
    out
}

fn apply(record: &mut CallRecord, u: &CallUpdate) {
    record.status = u.status.unwrap_or(record.status);
    record.start_time = u.start_time.or(record.start_time);
    record.end_time = u.end_time.or(record.end_time);
    record.duration_s = u.duration_s.or(record.duration_s);
    record.answered_by = u.answered_by.clone().or(record.answered_by.take());
    record.error_code = u.error_code.or(record.error_code);
    record.error_message = u.error_message.clone().or(record.error_message.take());
}

fn merge(earlier: &mut CallUpdate, later: CallUpdate) {
    earlier.status = later.status.or(earlier.status);
    earlier.start_time = later.start_time.or(earlier.start_time);
    earlier.end_time = later.end_time.or(earlier.end_time);
    earlier.duration_s = later.duration_s.or(earlier.duration_s);
    earlier.answered_by = later.answered_by.or(earlier.answered_by.take());
    earlier.error_code = later.error_code.or(earlier.error_code);
    earlier.error_message = later.error_message.or(earlier.error_message.take());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AccountSid, CallStatus, Direction};

    #[test]
    fn a_calls_writes_fold_into_one_keeping_order_and_later_values() {
        let account = AccountSid::parse("AC00000000000000000000000000000001").unwrap();
        let a = CallRecord::new(account, "x".into(), "y".into(), Direction::Inbound, CallStatus::Queued);
        let b = CallSid::generate();
        let up = |status, duration| {
            Box::new(CallUpdate { status: Some(status), duration_s: duration, ..CallUpdate::default() })
        };
        let batch = vec![
            StoreWrite::Update(b.clone(), up(CallStatus::Ringing, None)),
            StoreWrite::Insert(Box::new(a.clone())),
            StoreWrite::Update(a.sid.clone(), up(CallStatus::InProgress, None)),
            StoreWrite::Update(b.clone(), up(CallStatus::Completed, Some(9))),
            StoreWrite::Update(a.sid.clone(), up(CallStatus::Completed, Some(3))),
            StoreWrite::Update(b.clone(), Box::default()),
        ];
        let out = coalesce(batch);
        assert_eq!(out.len(), 2);
        match &out[0] {
            StoreWrite::Update(sid, u) => {
                assert_eq!(sid, &b);
                assert_eq!((u.status, u.duration_s), (Some(CallStatus::Completed), Some(9)));
            }
            other => panic!("{other:?}"),
        }
        match &out[1] {
            StoreWrite::Insert(r) => {
                assert_eq!(r.sid, a.sid);
                assert_eq!((r.status, r.duration_s), (CallStatus::Completed, Some(3)));
            }
            other => panic!("{other:?}"),
        }
    }
}
