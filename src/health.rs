//! Readiness of the running service (Kafka edge, replay or demo) and the
//! live hub the dashboard reads: shared by the edges and the ops endpoints,
//! so none of them imports another edge.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Readiness of the running service, shared with whoever reports it.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    last_error: Mutex<Option<String>>,
    /// What the dashboard shows live.
    pub live: crate::live::Hub,
}

impl Health {
    /// Joined the group and the brokers answer.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The last broker or client error, while it lasts.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn set_ok(&self) {
        if !self.ready.swap(true, Ordering::Relaxed) {
            tracing::info!("ready");
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
    }

    pub fn set_error(&self, message: String) {
        if self.ready.swap(false, Ordering::Relaxed) {
            tracing::warn!(%message, "not ready");
        }
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(message);
        }
    }
}
