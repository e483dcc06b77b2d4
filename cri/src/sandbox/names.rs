//! Sandbox name reservation, against the trap of containerd#4604 ("failed to reserve
//! sandbox name"): kubelet retries a RunPodSandbox that timed out on its side with the same
//! name while the first call may still be running.
//!
//! Two layers. While a RunPodSandbox is in flight its name is held here, in memory, and a
//! second call for the same name fails at once with a message naming the sandbox being made;
//! the hold is a guard, so every path out of RunPodSandbox — success, error, panic — drops it.
//! Once the sandbox's record exists in berthd, the record is the reservation: a retry finds
//! it by its name label and gets the same sandbox back (ready) or a clear error (not ready),
//! and RemovePodSandbox frees the name. Nothing of this outlives berth-cri except the record.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::proto::PodSandboxMetadata;

/// The name of a sandbox, containerd's `makeSandboxName`: `name_namespace_uid_attempt`.
pub fn sandbox_name(m: &PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// Names of the RunPodSandbox calls in flight, with the sandbox ID each is making.
#[derive(Default)]
pub struct Names {
    in_flight: Mutex<HashMap<String, String>>,
}

/// Holds a name until dropped.
pub struct Hold<'a> {
    names: &'a Names,
    name: String,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.names
            .in_flight
            .lock()
            .expect("names lock")
            .remove(&self.name);
    }
}

impl Names {
    /// Holds `name` for sandbox `id`; `Err` is the ID of the sandbox already being made
    /// under that name.
    pub fn hold(&self, name: &str, id: &str) -> Result<Hold<'_>, String> {
        let mut m = self.in_flight.lock().expect("names lock");
        if let Some(holder) = m.get(name) {
            return Err(holder.clone());
        }
        m.insert(name.to_owned(), id.to_owned());
        Ok(Hold {
            names: self,
            name: name.to_owned(),
        })
    }

    /// Whether sandbox `id` is still being made (its record exists but is not finished:
    /// hidden from List and Status, refused by Stop and Remove).
    pub fn in_flight(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .expect("names lock")
            .values()
            .any(|v| v == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_once_and_freed_on_every_path() {
        let n = Names::default();
        let h = n.hold("a_ns_uid_0", "id1").unwrap();
        assert_eq!(n.hold("a_ns_uid_0", "id2").err().as_deref(), Some("id1"));
        assert!(n.in_flight("id1"));
        drop(h);
        assert!(!n.in_flight("id1"));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _h = n.hold("a_ns_uid_0", "id3").unwrap();
            panic!("a failed RunPodSandbox");
        }));
        assert!(r.is_err());
        assert!(n.hold("a_ns_uid_0", "id4").is_ok());
        let m = PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 2,
        };
        assert_eq!(sandbox_name(&m), "web_default_u1_2");
    }
}
