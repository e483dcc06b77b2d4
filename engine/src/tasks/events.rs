//! Events of containers and tasks (`/containers/create`, `/tasks/start`, `/tasks/exit`,
//! `/tasks/oom`, `/boot/restart`, …), published by the core operations themselves so every
//! caller — a service, a boot container's supervisor — produces the same events.

use std::time::SystemTime;

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it was published.
    pub timestamp: SystemTime,
    /// The namespace of the object it is about.
    pub namespace: String,
    /// `/containers/create`, `/tasks/exit`, …
    pub topic: String,
    /// The event's fields (JSON, as containerd's event payloads).
    pub event: serde_json::Value,
}

impl Event {
    /// Whether a subscriber to `topics` gets this event: all topics when none is given, else
    /// the topics that are a prefix of this one.
    pub fn matches(&self, topics: &[String]) -> bool {
        topics.is_empty() || topics.iter().any(|t| self.topic.starts_with(t.as_str()))
    }
}

/// How many events wait for a slow subscriber before it misses the oldest.
pub const QUEUE: usize = 256;
