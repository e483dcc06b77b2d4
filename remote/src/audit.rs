//! The audit trail: one `tracing` line per mutating call (and per refusal), with who called
//! (certificate CN and serial, role), what (method, namespace), from where, and the result.
//! berthd's and init's logs reach init's log ring and its syslog forward; the listener's,
//! once init supervises it (phase 2), too.

use std::net::SocketAddr;

use crate::identity::Identity;
use crate::roles::Class;

/// The `tracing` target of audit lines, to filter or route them.
pub const TARGET: &str = "berth::audit";

/// What an audit line says about the call.
#[derive(Debug, Clone)]
pub struct AuditedCall {
    /// `/<service>/<method>`.
    pub method: String,
    /// The method's class (`None`: not in the table).
    pub class: Option<Class>,
    /// The namespace the call names (berth_api::keys's rule).
    pub namespace: String,
}

/// Logs one audit line; `result` is `OK`, a ttrpc code with its message, or why the call
/// ended without an answer.
pub fn record(identity: &Identity, peer: SocketAddr, call: &AuditedCall, result: &str) {
    tracing::info!(
        target: TARGET,
        cn = %identity.common_name,
        serial = %identity.serial,
        role = %identity.roles,
        method = %call.method,
        class = %call.class.map(|c| c.name()).unwrap_or("unknown"),
        namespace = %call.namespace,
        peer = %peer,
        result = %result,
        "remote call"
    );
}

/// The result text of a ttrpc status.
pub fn result_of(code: ttrpc::Code, message: &str) -> String {
    if code == ttrpc::Code::OK {
        "OK".to_string()
    } else {
        format!("{code:?}: {message}")
    }
}
