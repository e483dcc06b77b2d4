//! The snapshotter conformance suite: every case of containerd's
//! `core/snapshots/testsuite` (and a few more), run against any [`Snapshotter`] through a
//! factory, mounting each snapshot for real and checking file contents.
//!
//! It is a library module, not `#[cfg(test)]`, because it runs in two places: the host tests
//! (`engine/tests/snapshotters.rs`, overlayfs and native) and the static
//! `berth-snapshotter-conformance` binary inside a QEMU guest (ZFS). Differences between
//! implementations are declared as [`Capabilities`], never detected from the snapshotter's
//! name.
//!
//! Each case gets a fresh directory `<work_dir>/<case>/` with `root/` (given to the factory)
//! and `work/` (mount points and the flat reference trees); it is removed afterwards. Mounts
//! are held by [`MountGuard`]s, so a failing or panicking case still unmounts. The result is
//! a [`Report`] listing each case as passed, failed (with the reason) or skipped (with why).

mod cases;
pub mod fstest;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Mount, Result, Snapshotter};
use berth_api::mount::MountGuard;

/// Builds a snapshotter rooted at the given (existing, empty or previously used) directory.
/// The suite calls it again on the same root to check that state survives a reopen.
pub type Factory<'a> = dyn Fn(&Path) -> Result<Box<dyn Snapshotter>> + 'a;

/// What the implementation under test (and the machine) can do; cases that need something
/// missing are skipped with the reason, and behaviour that legitimately differs is chosen
/// here rather than by the snapshotter's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The returned mounts can be mounted here (root, mount-capable kernel). Without it, only
    /// the cases that do not look inside snapshots run.
    pub mounts: bool,
    /// Files can be given other owners (root): the Chown and permission cases.
    pub chown: bool,
    /// A directory that comes from a lower layer can be renamed. False for overlayfs without
    /// `redirect_dir`, where rename(2) of such a directory fails with `EXDEV`.
    pub rename_lower_directory: bool,
    /// Views are mounted read-only, so writes through them fail.
    pub view_readonly: bool,
}

impl Capabilities {
    /// The capabilities of a conforming local snapshotter on this host: mounts and chown when
    /// running as root, views read-only, renames of lower directories allowed.
    pub fn host_default() -> Self {
        let root = nix::unistd::geteuid().is_root();
        Capabilities {
            mounts: root,
            chown: root,
            rename_lower_directory: true,
            view_readonly: true,
        }
    }
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// A check failed; the message says which and what was seen.
    Failed(String),
    /// Not run because a capability is missing; the message names it.
    Skipped(String),
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name in this suite.
    pub name: &'static str,
    /// The name of the corresponding case in containerd's testsuite, if any.
    pub containerd: Option<&'static str>,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time, printed in the report (never asserted).
    pub duration: Duration,
}

/// The results of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The name given to [`run`].
    pub snapshotter: String,
    /// Every case, in the suite's order.
    pub cases: Vec<CaseResult>,
}

impl Report {
    /// The cases that failed.
    pub fn failed(&self) -> Vec<&CaseResult> {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .collect()
    }

    /// True when no case failed (skips are allowed; they are listed with their reasons).
    pub fn is_success(&self) -> bool {
        self.failed().is_empty()
    }

    /// (passed, failed, skipped) counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for r in &self.cases {
            match r.outcome {
                Outcome::Passed => c.0 += 1,
                Outcome::Failed(_) => c.1 += 1,
                Outcome::Skipped(_) => c.2 += 1,
            }
        }
        c
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "snapshotter conformance: {}", self.snapshotter)?;
        for c in &self.cases {
            let (word, why) = match &c.outcome {
                Outcome::Passed => ("PASS", String::new()),
                Outcome::Failed(r) => ("FAIL", format!(": {r}")),
                Outcome::Skipped(r) => ("SKIP", format!(": {r}")),
            };
            writeln!(
                f,
                "  {word} {:<30} {:>8.3}s{why}",
                c.name,
                c.duration.as_secs_f64()
            )?;
        }
        let (p, fl, s) = self.counts();
        write!(f, "{p} passed, {fl} failed, {s} skipped")
    }
}

/// Why a case did not pass.
#[derive(Debug)]
enum Fail {
    Failed(String),
    Skipped(String),
}

type CaseFn = fn(&mut Ctx<'_>) -> std::result::Result<(), Fail>;

/// The state one case works with.
struct Ctx<'a> {
    sn: Box<dyn Snapshotter>,
    root: PathBuf,
    work: PathBuf,
    factory: &'a Factory<'a>,
    caps: Capabilities,
    seq: u32,
}

impl Ctx<'_> {
    /// A fresh directory under `work/`.
    fn dir(&mut self, hint: &str) -> std::result::Result<PathBuf, Fail> {
        self.seq += 1;
        let p = self.work.join(format!("{hint}-{}", self.seq));
        std::fs::create_dir_all(&p)
            .map_err(|e| Fail::Failed(format!("mkdir {}: {e}", p.display())))?;
        Ok(p)
    }

    /// Mounts `mounts` on a fresh directory and returns the guard.
    fn mount(&mut self, mounts: &[Mount], hint: &str) -> std::result::Result<MountGuard, Fail> {
        if mounts.is_empty() {
            return Err(Fail::Failed(format!(
                "{hint}: snapshotter returned no mounts"
            )));
        }
        let d = self.dir(hint)?;
        MountGuard::mount(mounts, &d).map_err(|e| Fail::Failed(format!("{hint}: {e}")))
    }

    fn need_mounts(&self) -> std::result::Result<(), Fail> {
        if self.caps.mounts {
            Ok(())
        } else {
            Err(Fail::Skipped(
                "needs to mount snapshots (capability `mounts`: run as root)".into(),
            ))
        }
    }

    fn need_chown(&self) -> std::result::Result<(), Fail> {
        if self.caps.chown {
            Ok(())
        } else {
            Err(Fail::Skipped(
                "needs to change owners (capability `chown`: run as root)".into(),
            ))
        }
    }
}

/// Runs every case against snapshotters made by `factory`, each in its own directory under
/// `work_dir` (which must exist), and reports the results. Never panics on a failing case.
pub fn run(name: &str, factory: &Factory<'_>, caps: Capabilities, work_dir: &Path) -> Report {
    run_selected(name, factory, caps, work_dir, &|_| true)
}

/// Like [`run`], but only the cases whose name `select` accepts (for a quick subset where
/// every command is slow, e.g. ZFS under emulation; the full suite runs elsewhere).
pub fn run_selected(
    name: &str,
    factory: &Factory<'_>,
    caps: Capabilities,
    work_dir: &Path,
    select: &dyn Fn(&str) -> bool,
) -> Report {
    let mut report = Report {
        snapshotter: name.to_string(),
        cases: Vec::new(),
    };
    for &(case, containerd, f) in cases::ALL.iter().filter(|c| select(c.0)) {
        let start = Instant::now();
        let outcome = run_case(case, factory, caps, work_dir, f);
        report.cases.push(CaseResult {
            name: case,
            containerd,
            outcome,
            duration: start.elapsed(),
        });
    }
    report
}

fn run_case(
    case: &str,
    factory: &Factory<'_>,
    caps: Capabilities,
    work_dir: &Path,
    f: CaseFn,
) -> Outcome {
    let base = work_dir.join(case);
    let (root, work) = (base.join("root"), base.join("work"));
    for d in [&root, &work] {
        if let Err(e) = std::fs::create_dir_all(d) {
            return Outcome::Failed(format!("mkdir {}: {e}", d.display()));
        }
    }
    let outcome = match factory(&root) {
        Err(e) => Outcome::Failed(format!("factory: {e}")),
        Ok(sn) => {
            let mut ctx = Ctx {
                sn,
                root: root.clone(),
                work: work.clone(),
                factory,
                caps,
                seq: 0,
            };
            let r = catch_unwind(AssertUnwindSafe(|| f(&mut ctx)));
            let _ = ctx.sn.close();
            match r {
                Ok(Ok(())) => Outcome::Passed,
                Ok(Err(Fail::Failed(m))) => Outcome::Failed(m),
                Ok(Err(Fail::Skipped(m))) => Outcome::Skipped(m),
                Err(p) => Outcome::Failed(format!(
                    "panicked: {}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                )),
            }
        }
    };
    // Mount guards have unmounted by now; a leftover mount would make this fail loudly
    // (EBUSY) rather than delete through it.
    if let Err(e) = std::fs::remove_dir_all(&base) {
        if outcome == Outcome::Passed {
            return Outcome::Failed(format!("removing {}: {e}", base.display()));
        }
    }
    outcome
}
