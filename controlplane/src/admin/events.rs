//! The dataplane's events, kept in a bounded log that the admin API serves
//! (`/v1/dataplane/events?after=SEQ&wait_ms=MS`) and the call machinery of
//! later releases subscribes to.

use dataplane::control::Event;
use dataplane::DataplaneHandle;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// Events kept for readers that come late; older ones are forgotten.
const KEEP: usize = 10_000;
/// How often the pump empties the dataplane's event queue.
const PUMP_EVERY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoggedEvent {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Default)]
pub struct EventLog {
    entries: Mutex<(u64, VecDeque<LoggedEvent>)>,
    notify: Notify,
}

impl EventLog {
    fn push(&self, events: Vec<Event>) {
        let mut guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (last, log) = &mut *guard;
        for event in events {
            *last += 1;
            if log.len() == KEEP {
                log.pop_front();
            }
            log.push_back(LoggedEvent { seq: *last, event });
        }
        drop(guard);
        self.notify.notify_waiters();
    }

    fn after(&self, seq: u64) -> (u64, Vec<LoggedEvent>) {
        let guard = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (last, log) = &*guard;
        (*last, log.iter().filter(|e| e.seq > seq).cloned().collect())
    }

    /// Events after `seq`, waiting up to `wait` for one when there is none yet.
    pub async fn wait_after(&self, seq: u64, wait: Duration) -> (u64, Vec<LoggedEvent>) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.notify.notified();
            let (last, events) = self.after(seq);
            if !events.is_empty() || tokio::time::Instant::now() >= deadline {
                return (last, events);
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }
}

/// Moves the dataplane's events into the log until the process stops, and
/// tells the call layer (`timeouts`) which sessions went silent.
pub async fn pump(
    dataplane: DataplaneHandle,
    log: std::sync::Arc<EventLog>,
    timeouts: Option<tokio::sync::mpsc::UnboundedSender<dataplane::session::SessionId>>,
) {
    let mut tick = tokio::time::interval(PUMP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let events = dataplane.take_events();
        if events.is_empty() {
            continue;
        }
        for e in &events {
            match e {
                Event::MediaTimeout { session } => {
                    tracing::info!(%session, "media timeout");
                    if let Some(t) = &timeouts {
                        let _ = t.send(*session);
                    }
                }
                Event::Latched { session, side, rtcp, remote } => {
                    tracing::debug!(%session, side, rtcp, %remote, "leg latched")
                }
            }
        }
        log.push(events);
    }
}
