//! THE role table: every method of every service in `api/proto/` with its [`Class`], and
//! the backend the listener routes its service to.
//!
//! One table, read by the listener ([`class_of`]), by the docs (the roles table in
//! docs/remote-api.md is [`markdown`]'s output, checked by a test) and by the tests that keep
//! it complete: a method of [`berth_api::methods::ALL`] without a row fails the build's tests,
//! and a row naming no method fails them too. A method missing from the table is refused.
//!
//! How methods were classified (from the protos):
//! - reader: what only reads — version, plugins, get/list/info/stat/status/usage, logs,
//!   metrics, events, hosts resolution, waiting for a task, snapshot mounts (text only).
//! - operator: what runs workloads or adds to the node — pull, import, content writes,
//!   image/container/task/lease/snapshot creation and updates (labels included), exec,
//!   kill/pause/resume/delete of containers and tasks, restarting a service, reboot; also
//!   reading whole blobs and exporting images (`Content.Read`, `Transfer.Export`): images can
//!   carry baked-in secrets, so a reader sees metadata, not bytes.
//! - admin: what removes stored data or changes the node itself — namespace, content and
//!   snapshot removal, snapshot cleanup, GC, configuration reload, upgrade, power-off, and
//!   the node's configuration files (listing them too: they hold credentials and the deny
//!   list).
//! - local: the shim's API, berthd's private channel to a container, never remote.

use crate::roles::Class;

/// Where the listener forwards a service's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// berthd's socket: every engine service.
    Berthd,
    /// berth-init's control socket: the System service.
    Init,
}

impl Backend {
    /// The backend serving `service`.
    pub fn of(service: &str) -> Backend {
        if service == SYSTEM {
            Backend::Init
        } else {
            Backend::Berthd
        }
    }

    /// A short name for logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Berthd => "berthd",
            Backend::Init => "berth-init",
        }
    }
}

/// init's control API service, the one routed to [`Backend::Init`].
pub const SYSTEM: &str = "berth.services.system.v1.System";

const P: &str = "berth.services.";

/// One row: service (without the `berth.services.` prefix, except the shim's), method, class.
type Row = (&'static str, &'static str, Class);

use Class::{Admin as A, Local as L, Operator as O, Reader as R};

/// Every method and its class.
pub const TABLE: &[Row] = &[
    ("config.v1.Config", "Reload", A),
    ("containers.v1.Containers", "Create", O),
    ("containers.v1.Containers", "Get", R),
    ("containers.v1.Containers", "List", R),
    ("containers.v1.Containers", "Update", O),
    ("containers.v1.Containers", "Delete", O),
    ("content.v1.Content", "Info", R),
    ("content.v1.Content", "Update", O),
    ("content.v1.Content", "List", R),
    ("content.v1.Content", "Delete", A),
    ("content.v1.Content", "Read", O),
    ("content.v1.Content", "Status", R),
    ("content.v1.Content", "ListStatuses", R),
    ("content.v1.Content", "Write", O),
    ("content.v1.Content", "Abort", O),
    ("events.v1.Events", "Subscribe", R),
    ("gc.v1.GC", "Collect", A),
    ("images.v1.Images", "Get", R),
    ("images.v1.Images", "List", R),
    ("images.v1.Images", "Create", O),
    ("images.v1.Images", "Update", O),
    ("images.v1.Images", "Delete", O),
    ("introspection.v1.Introspection", "Plugins", R),
    ("leases.v1.Leases", "Create", O),
    ("leases.v1.Leases", "Delete", O),
    ("leases.v1.Leases", "List", R),
    ("leases.v1.Leases", "AddResource", O),
    ("leases.v1.Leases", "DeleteResource", O),
    ("leases.v1.Leases", "ListResources", R),
    ("namespaces.v1.Namespaces", "Get", R),
    ("namespaces.v1.Namespaces", "List", R),
    ("namespaces.v1.Namespaces", "Create", O),
    ("namespaces.v1.Namespaces", "Update", O),
    ("namespaces.v1.Namespaces", "Delete", A),
    ("pull.v1.Pull", "Pull", O),
    ("registry.v1.Registry", "ResolveHosts", R),
    ("snapshots.v1.Snapshots", "Prepare", O),
    ("snapshots.v1.Snapshots", "View", O),
    ("snapshots.v1.Snapshots", "Mounts", R),
    ("snapshots.v1.Snapshots", "Commit", O),
    ("snapshots.v1.Snapshots", "Remove", A),
    ("snapshots.v1.Snapshots", "Stat", R),
    ("snapshots.v1.Snapshots", "Update", O),
    ("snapshots.v1.Snapshots", "List", R),
    ("snapshots.v1.Snapshots", "Usage", R),
    ("snapshots.v1.Snapshots", "Cleanup", A),
    ("system.v1.System", "Status", R),
    ("system.v1.System", "Log", R),
    ("system.v1.System", "FollowLog", R),
    ("system.v1.System", "Reboot", O),
    ("system.v1.System", "Poweroff", A),
    ("system.v1.System", "RestartService", O),
    ("system.v1.System", "UpgradeBegin", A),
    ("system.v1.System", "UpgradeWrite", A),
    ("system.v1.System", "UpgradeCommit", A),
    ("system.v1.System", "Reload", A),
    ("system.v1.System", "NodeConfigList", A),
    ("system.v1.System", "NodeConfigGet", A),
    ("system.v1.System", "NodeConfigPut", A),
    ("tasks.v1.Tasks", "Create", O),
    ("tasks.v1.Tasks", "Start", O),
    ("tasks.v1.Tasks", "Kill", O),
    ("tasks.v1.Tasks", "Wait", R),
    ("tasks.v1.Tasks", "Delete", O),
    ("tasks.v1.Tasks", "Exec", O),
    ("tasks.v1.Tasks", "Pids", R),
    ("tasks.v1.Tasks", "List", R),
    ("tasks.v1.Tasks", "Get", R),
    ("tasks.v1.Tasks", "Pause", O),
    ("tasks.v1.Tasks", "Resume", O),
    ("tasks.v1.Tasks", "Metrics", R),
    ("tasks.v1.Tasks", "Logs", R),
    // Reopening a CRI log changes where a running task writes: an operator's act.
    ("tasks.v1.Tasks", "ReopenLog", O),
    // A process's stdio, stdin included: writes into a container.
    ("tasks.v1.Tasks", "Attach", O),
    ("transfer.v1.Transfer", "Import", O),
    ("transfer.v1.Transfer", "Export", O),
    ("transfer.v1.Transfer", "View", O),
    ("version.v1.Version", "Version", R),
    ("berth.shim.v1.Shim", "State", L),
    ("berth.shim.v1.Shim", "Start", L),
    ("berth.shim.v1.Shim", "Kill", L),
    ("berth.shim.v1.Shim", "Wait", L),
    ("berth.shim.v1.Shim", "Exec", L),
    ("berth.shim.v1.Shim", "Pids", L),
    ("berth.shim.v1.Shim", "ReopenLog", L),
    ("berth.shim.v1.Shim", "Pause", L),
    ("berth.shim.v1.Shim", "Resume", L),
    ("berth.shim.v1.Shim", "Delete", L),
    ("berth.shim.v1.Shim", "Attach", L),
];

/// The fully qualified service of a row.
fn full_service(row_service: &str) -> String {
    if row_service.starts_with("berth.") {
        row_service.to_string()
    } else {
        format!("{P}{row_service}")
    }
}

/// Whether a row names `service` (fully qualified) without allocating.
fn names(row_service: &str, service: &str) -> bool {
    if row_service.starts_with("berth.") {
        row_service == service
    } else {
        service.strip_prefix(P) == Some(row_service)
    }
}

/// The class of `service`/`method`, or `None` for a method the table does not hold (refused).
pub fn class_of(service: &str, method: &str) -> Option<Class> {
    TABLE
        .iter()
        .find(|(s, m, _)| *m == method && names(s, service))
        .map(|(_, _, c)| *c)
}

/// The roles table of docs/remote-api.md: one row per service, its methods in the column of
/// the least role that may call them.
pub fn markdown() -> String {
    let mut out = String::from(
        "| service | backend | reader | operator | admin |\n| --- | --- | --- | --- | --- |\n",
    );
    let mut services: Vec<&str> = TABLE.iter().map(|(s, _, _)| *s).collect();
    services.dedup();
    for s in services {
        let full = full_service(s);
        let col = |c: Class| {
            TABLE
                .iter()
                .filter(|(rs, _, rc)| *rs == s && *rc == c)
                .map(|(_, m, _)| *m)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if TABLE
            .iter()
            .any(|(rs, _, c)| *rs == s && *c == Class::Local)
        {
            out.push_str(&format!(
                "| `{full}` | — | never remote: {} | | |\n",
                col(Class::Local)
            ));
            continue;
        }
        out.push_str(&format!(
            "| `{full}` | {} | {} | {} | {} |\n",
            Backend::of(&full).name(),
            col(Class::Reader),
            col(Class::Operator),
            col(Class::Admin)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::methods::ALL;

    /// The guard the issue asks for: a new proto method without a class fails here.
    #[test]
    fn every_method_of_the_api_has_a_class() {
        let missing: Vec<String> = ALL
            .iter()
            .filter(|m| class_of(m.service, m.method).is_none())
            .map(|m| m.path())
            .collect();
        assert!(
            missing.is_empty(),
            "methods without a class in remote/src/table.rs (add a row for each): {missing:?}"
        );
    }

    #[test]
    fn every_row_names_a_method_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (s, m, _) in TABLE {
            let full = full_service(s);
            assert!(
                ALL.iter().any(|x| x.service == full && x.method == *m),
                "table row /{full}/{m} names no method of the protos"
            );
            assert!(seen.insert((full.clone(), *m)), "/{full}/{m} twice");
        }
        assert_eq!(seen.len(), ALL.len());
    }

    #[test]
    fn a_handful_of_explicit_expectations() {
        let c = |s: &str, m: &str| class_of(&format!("{P}{s}"), m);
        assert_eq!(c("version.v1.Version", "Version"), Some(Class::Reader));
        assert_eq!(c("images.v1.Images", "List"), Some(Class::Reader));
        assert_eq!(c("tasks.v1.Tasks", "Logs"), Some(Class::Reader));
        assert_eq!(c("events.v1.Events", "Subscribe"), Some(Class::Reader));
        assert_eq!(
            c("registry.v1.Registry", "ResolveHosts"),
            Some(Class::Reader)
        );
        assert_eq!(
            c("containers.v1.Containers", "Create"),
            Some(Class::Operator)
        );
        assert_eq!(c("tasks.v1.Tasks", "Create"), Some(Class::Operator));
        assert_eq!(c("pull.v1.Pull", "Pull"), Some(Class::Operator));
        assert_eq!(c("system.v1.System", "Reboot"), Some(Class::Operator));
        assert_eq!(c("system.v1.System", "Poweroff"), Some(Class::Admin));
        assert_eq!(c("system.v1.System", "UpgradeCommit"), Some(Class::Admin));
        assert_eq!(c("config.v1.Config", "Reload"), Some(Class::Admin));
        assert_eq!(c("gc.v1.GC", "Collect"), Some(Class::Admin));
        assert_eq!(c("namespaces.v1.Namespaces", "Delete"), Some(Class::Admin));
        assert_eq!(class_of("berth.shim.v1.Shim", "Kill"), Some(Class::Local));
        assert_eq!(c("version.v1.Version", "Nope"), None);
        assert_eq!(class_of("Version", "Version"), None);
        assert_eq!(
            class_of("evil.berth.services.version.v1.Version", "Version"),
            None
        );
    }

    #[test]
    fn system_goes_to_init_and_the_rest_to_berthd() {
        assert_eq!(Backend::of(SYSTEM), Backend::Init);
        assert!(ALL.iter().any(|m| m.service == SYSTEM));
        assert_eq!(
            Backend::of("berth.services.images.v1.Images"),
            Backend::Berthd
        );
    }

    /// docs/remote-api.md carries [`markdown`]'s table verbatim, so the docs cannot drift
    /// from the table. `BERTH_UPDATE_DOCS=1` rewrites it between the markers.
    #[test]
    fn the_docs_table_is_the_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/remote-api.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- roles-table:begin -->\n", "<!-- roles-table:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let want = markdown();
        if doc[start..stop] != want {
            if std::env::var_os("BERTH_UPDATE_DOCS").is_some() {
                let new = format!("{}{want}{}", &doc[..start], &doc[stop..]);
                std::fs::write(&path, new).unwrap();
                return;
            }
            panic!("docs/remote-api.md's roles table differs from remote/src/table.rs; rerun with BERTH_UPDATE_DOCS=1, or paste:\n{want}");
        }
    }
}
