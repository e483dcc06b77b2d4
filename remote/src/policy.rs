//! The decision on one call: may this identity call this method, and where does it go. Pure
//! (no I/O), so every rule is unit-tested here; the relay only acts on the answer.

use crate::frame::Call;
use crate::identity::Identity;
use crate::roles::Class;
use crate::table::{class_of, Backend};

/// Metadata keys starting with this are the listener's own (phase 2 may pass the caller's
/// identity to the backends under them): a client may not send them.
pub const RESERVED_METADATA_PREFIX: &str = "berth-remote-";

/// The answer for one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward it to `backend`.
    Allow {
        /// The method's class.
        class: Class,
        /// Where it goes.
        backend: Backend,
    },
    /// Answer it with `code` and `message`, forward nothing.
    Refuse {
        /// The method's class, when the table has it.
        class: Option<Class>,
        /// The ttrpc status code (PERMISSION_DENIED).
        code: ttrpc::Code,
        /// Names the role and the method, for the client and the audit line.
        message: String,
    },
}

impl Decision {
    /// Whether the call gets an audit line: every mutating call, allowed or not, and every
    /// refusal.
    pub fn audited(&self) -> bool {
        match self {
            Decision::Allow { class, .. } => class.mutating(),
            Decision::Refuse { .. } => true,
        }
    }
}

/// Decides `call` by `identity`.
pub fn decide(identity: &Identity, call: &Call) -> Decision {
    let role = &identity.roles;
    let path = call.path();
    let class = class_of(&call.service, &call.method);
    let refuse = |message: String| Decision::Refuse {
        class,
        code: ttrpc::Code::PERMISSION_DENIED,
        message,
    };
    if let Some(k) = call
        .metadata
        .keys()
        .find(|k| k.starts_with(RESERVED_METADATA_PREFIX))
    {
        return refuse(format!(
            "role {role} may not call {path}: metadata key {k:?} is reserved for the remote API"
        ));
    }
    match class {
        None => refuse(format!(
            "role {role} may not call {path}: the method is not in the remote API's role table"
        )),
        Some(Class::Local) => refuse(format!(
            "role {role} may not call {path}: that service is never reachable remotely"
        )),
        Some(c) if !role.allow(c) => refuse(format!(
            "role {role} may not call {path} (it needs the {c} role)"
        )),
        Some(c) => Decision::Allow {
            class: c,
            backend: Backend::of(&call.service),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Serial;
    use crate::roles::{Role, Roles};

    fn who(roles: &[Role]) -> Identity {
        Identity {
            common_name: "alice".into(),
            serial: Serial::from_bytes(&[1]),
            roles: Roles::of(roles),
        }
    }

    fn call(service: &str, method: &str) -> Call {
        Call {
            service: format!("berth.services.{service}"),
            method: method.into(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn readers_read_and_are_refused_with_role_and_method_named() {
        let r = who(&[Role::Reader]);
        assert_eq!(
            decide(&r, &call("images.v1.Images", "List")),
            Decision::Allow {
                class: Class::Reader,
                backend: Backend::Berthd
            }
        );
        match decide(&r, &call("containers.v1.Containers", "Create")) {
            Decision::Refuse { code, message, .. } => {
                assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
                assert!(message.contains("reader"), "{message}");
                assert!(
                    message.contains("/berth.services.containers.v1.Containers/Create"),
                    "{message}"
                );
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn system_goes_to_init_and_admin_reaches_it() {
        let d = decide(&who(&[Role::Admin]), &call("system.v1.System", "Poweroff"));
        assert_eq!(
            d,
            Decision::Allow {
                class: Class::Admin,
                backend: Backend::Init
            }
        );
        assert!(d.audited());
        // Refusals are audited too.
        assert!(decide(
            &who(&[Role::Operator]),
            &call("system.v1.System", "Poweroff")
        )
        .audited());
        assert!(!decide(&who(&[Role::Reader]), &call("system.v1.System", "Status")).audited());
    }

    #[test]
    fn unknown_methods_the_shim_peers_and_reserved_metadata_are_refused() {
        let admin = who(&[Role::Admin]);
        for c in [
            call("images.v1.Images", "Frobnicate"),
            Call {
                service: "berth.shim.v1.Shim".into(),
                method: "Kill".into(),
                metadata: Default::default(),
            },
        ] {
            assert!(
                matches!(decide(&admin, &c), Decision::Refuse { .. }),
                "{c:?}"
            );
        }
        assert!(matches!(
            decide(&who(&[Role::Peer]), &call("version.v1.Version", "Version")),
            Decision::Refuse { .. }
        ));
        assert!(matches!(
            decide(&who(&[]), &call("version.v1.Version", "Version")),
            Decision::Refuse { .. }
        ));
        let mut c = call("version.v1.Version", "Version");
        c.metadata
            .insert("berth-remote-role".into(), vec!["admin".into()]);
        match decide(&admin, &c) {
            Decision::Refuse { message, .. } => assert!(message.contains("reserved"), "{message}"),
            d => panic!("{d:?}"),
        }
    }
}
