//! `berth`: the image's static multi-call binary, and the host's `berthd` and `berthctl`.
//!
//! One applet table ([`APPLETS`]) drives the dispatch on `basename(argv[0])`, the usage line
//! and the binaries table in docs/architecture.md (a test keeps that table in step). The host
//! binaries dispatch through the same table, so `berthd` re-executing itself as `berth-shim`
//! for a container's shim takes the same path on a host as in an image.
//!
//! Names win over "am I PID 1": the engine may re-execute this binary as PID 1 of a new PID
//! namespace, and that must not turn into a second init. An unknown name running as PID 1
//! (`init=/usr/bin/berth`) is init.

use std::ffi::OsString;
use std::path::Path;

/// One applet: the name it answers to, what it is, and its entry point (argv in, exit code
/// out).
pub struct Applet {
    /// `basename(argv[0])` that selects it (also `berth <name> …`).
    pub name: &'static str,
    /// Other names that select it.
    pub aliases: &'static [&'static str],
    /// One line for the usage text and docs/architecture.md.
    pub help: &'static str,
    /// Runs the applet with its argv (argv[0] included); returns the exit code.
    pub entry: fn(Vec<OsString>) -> i32,
}

fn init(_: Vec<OsString>) -> i32 {
    berth_init::run()
}

/// Every applet of the multi-call binary.
pub const APPLETS: &[Applet] = &[
    Applet {
        name: "init",
        aliases: &["berth-init"],
        help: "PID 1: switch root from the initramfs, bring the node up, supervise services",
        entry: init,
    },
    Applet {
        name: "berthd",
        aliases: &[],
        help: "the container engine: ttrpc API on /run/berth/berthd.sock",
        entry: berth_daemon::main_with_args,
    },
    Applet {
        name: "berthctl",
        aliases: &[],
        help: "the command-line client of berthd and init (ctr-like verbs)",
        entry: berth_ctl::main_with_args,
    },
    Applet {
        name: "berth-apid",
        aliases: &[],
        help: "the remote API: mutual TLS 1.3, roles from the client certificate, ttrpc to berthd and init",
        entry: berth_remote::apid::main_with_args,
    },
    Applet {
        name: "berth-fetch",
        aliases: &[],
        help: "one HTTPS GET with the server's certificate pinned (init's berth.config=https://…)",
        entry: berth_remote::fetch::main_with_args,
    },
    Applet {
        name: berth_engine::tasks::SHIM_ARGV0,
        aliases: &[],
        help: "one container's shim (berthd starts it): owns the container's init and stdio",
        entry: berth_daemon::shim::main_with_args,
    },
    Applet {
        name: berth_cri::APPLET,
        aliases: &[],
        help: "the Kubernetes CRI v1 adapter: gRPC on /run/berth/cri.sock, ttrpc to berthd",
        entry: berth_cri::main_with_args,
    },
    Applet {
        name: berth_cri::pause::APPLET,
        aliases: &[],
        help: "a pod sandbox's namespace holder (berth-cri runs it; berth's own pause)",
        entry: berth_cri::pause::main_with_args,
    },
];

/// The applet named `name`.
pub fn applet(name: &str) -> Option<&'static Applet> {
    APPLETS
        .iter()
        .find(|a| a.name == name || a.aliases.contains(&name))
}

fn applet_name(arg0: &OsString) -> String {
    Path::new(arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The usage line, from the table.
pub fn usage() -> String {
    let names: Vec<&str> = APPLETS.iter().map(|a| a.name).collect();
    let mut s = format!("usage: berth <{}> [args...]\n", names.join("|"));
    for a in APPLETS {
        s.push_str(&format!("  {:<12} {}\n", a.name, a.help));
    }
    s
}

/// Dispatches `args` on `basename(argv[0])` (or `berth <applet> …`); a name that is no applet
/// runs `fallback` when given (the host's `berthd` and `berthctl` under another name), else
/// init when this is PID 1, else prints the usage. Returns the exit code.
pub fn dispatch(mut args: Vec<OsString>, fallback: Option<&str>) -> i32 {
    let mut name = args.first().map(applet_name).unwrap_or_default();
    if name == "berth" && args.len() >= 2 {
        args.remove(0);
        name = applet_name(&args[0]);
    }
    if let Some(a) = applet(&name) {
        return (a.entry)(args);
    }
    if let Some(a) = fallback.and_then(applet) {
        return (a.entry)(args);
    }
    if std::process::id() == 1 {
        berth_init::run()
    }
    if name == "berth" {
        eprint!("{}", usage());
    } else {
        let names: Vec<&str> = APPLETS.iter().map(|a| a.name).collect();
        eprintln!(
            "berth: unknown applet {name:?} (expected one of {})",
            names.join(", ")
        );
    }
    2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let mut seen = std::collections::BTreeSet::new();
        for a in APPLETS {
            for n in std::iter::once(&a.name).chain(a.aliases) {
                assert!(seen.insert(*n), "{n} twice");
                assert_eq!(applet(n).map(|x| x.name), Some(a.name));
            }
        }
        assert!(applet("berth").is_none());
    }

    #[test]
    fn the_architecture_doc_lists_every_applet() {
        let doc = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md"),
        )
        .unwrap();
        for a in APPLETS {
            let row = format!("| `{}` | {} |", a.name, a.help);
            assert!(
                doc.contains(&row),
                "docs/architecture.md lacks the applet row:\n{row}"
            );
        }
    }
}
