//! Runs the snapshotter conformance suite against one snapshotter and prints the report;
//! exits 1 when a case failed, 2 on bad usage. Static, so it can run inside a QEMU guest,
//! where the ZFS snapshotter is checked on a real pool.
//!
//! Usage:
//! * `berth-snapshotter-conformance <overlayfs|native> <work dir>`
//! * `berth-snapshotter-conformance zfs <work dir> <parent dataset> [--skip <case>,<case>…]`:
//!   the suite, each case on its own child dataset of the parent (destroyed afterwards); the
//!   skipped cases are listed as such (the quick subset `make test` runs under emulation);
//! * `berth-snapshotter-conformance zfs-scaling <work dir> <parent dataset> <n>,<n>…`: the
//!   number of `zfs` commands each operation runs, with n existing snapshots for each n; fails
//!   when a count differs between the n or a command lists the pool; the populated datasets
//!   are left in place (a rerun destroys them first);
//! * `berth-snapshotter-conformance zfs-cleanup <work dir> <parent dataset>`: removal past a
//!   foreign snapshot, a dataset deleted behind berth's back and a failing destroy, then the
//!   reconciliation at open;
//! * `berth-snapshotter-conformance zfs-bench <work dir> <parent dataset> <n>,<n>… <rounds>`:
//!   Prepare+Commit latency with n existing snapshots for each n (`make bench`). Each n has
//!   its own child dataset `<parent>/bench-<n>` and root `<work dir>/bench-<n>`, populated
//!   only up to what is missing, so a pool kept from an earlier run (with the work directory
//!   on it) is reused.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_engine::snapshots::testsuite::{self, Capabilities, Factory};
use berth_engine::snapshots::zfs::{Zfs, ZfsConfig, MANAGED_PROPERTY};
use berth_engine::snapshots::{native::Native, overlay::Overlay, Labels, Snapshotter};

const USAGE: &str = "usage: berth-snapshotter-conformance <overlayfs|native> <work dir>\n       \
berth-snapshotter-conformance zfs <work dir> <parent dataset> [--skip <case>,<case>…]\n       \
berth-snapshotter-conformance zfs-scaling <work dir> <parent dataset> <n>[,<n>…]\n       \
berth-snapshotter-conformance zfs-cleanup <work dir> <parent dataset>\n       \
berth-snapshotter-conformance zfs-bench <work dir> <parent dataset> <n>[,<n>…] <rounds>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, work, rest) = match args.as_slice() {
        [name, work, rest @ ..] => (name.as_str(), PathBuf::from(work), rest),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("cannot create work directory {}: {e}", work.display());
        return ExitCode::from(2);
    }
    let result = match (name, rest) {
        ("overlayfs" | "native", []) => return suite(name, &work, None, &[]),
        ("zfs", [parent]) => return suite(name, &work, Some(parent), &[]),
        ("zfs", [parent, flag, skip]) if flag == "--skip" => {
            let skip: Vec<&str> = skip.split(',').collect();
            return suite(name, &work, Some(parent), &skip);
        }
        ("zfs-scaling", [parent, ns]) => scaling(&work, parent, ns),
        ("zfs-cleanup", [parent]) => cleanup(&work, parent),
        ("zfs-bench", [parent, ns, rounds]) => bench(&work, parent, ns, rounds),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("FAIL {name}: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn suite(name: &str, work: &Path, parent: Option<&str>, skip: &[&str]) -> ExitCode {
    let overlay = |root: &Path| -> berth_engine::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Overlay::open(root)?))
    };
    let native = |root: &Path| -> berth_engine::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Native::open(root)?))
    };
    // Each case gets its own root, so its own child dataset (named after the case's
    // directory): a parent dataset belongs to one snapshotter root.
    let made: RefCell<Vec<String>> = RefCell::new(Vec::new());
    let parent = parent.unwrap_or_default().to_string();
    let zfs = |root: &Path| -> berth_engine::snapshots::Result<Box<dyn Snapshotter>> {
        let case = root
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ds = format!("{parent}/case-{}", sanitize(&case));
        if !made.borrow().contains(&ds) {
            let _ = zfs_cmd(&["destroy", "-r", &ds]);
            zfs_cmd(&["create", "-o", "mountpoint=none", &ds]).map_err(|e| {
                berth_engine::snapshots::Error::InvalidArgument {
                    reason: format!("{e:#}"),
                }
            })?;
            made.borrow_mut().push(ds.clone());
        }
        Ok(Box::new(Zfs::open(root, &config(&ds))?))
    };
    let (factory, caps): (&Factory<'_>, Capabilities) = match name {
        "overlayfs" => (&overlay, Overlay::suite_capabilities()),
        "native" => (&native, Native::suite_capabilities()),
        "zfs" => (&zfs, Zfs::suite_capabilities()),
        other => {
            eprintln!("unknown snapshotter {other:?}: expected overlayfs, native or zfs");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let report = testsuite::run_selected(name, factory, caps, work, &|case| !skip.contains(&case));
    if !skip.is_empty() {
        println!(
            "not run here (the full suite runs them): {}",
            skip.join(", ")
        );
    }
    println!("{report}");
    println!("suite took {:.1} s", started.elapsed().as_secs_f64());
    for ds in made.borrow().iter() {
        if let Err(e) = zfs_cmd(&["destroy", "-r", ds]) {
            eprintln!("cleanup: {e:#}");
        }
    }
    if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn config(dataset: &str) -> ZfsConfig {
    ZfsConfig {
        dataset: dataset.to_string(),
        ..ZfsConfig::default()
    }
}

/// A `zfs` command of the test itself (not counted: it is not the snapshotter's).
fn zfs_cmd(args: &[&str]) -> Result<String> {
    let out = Command::new(ZfsConfig::default().zfs_path)
        .args(args)
        .output()
        .context("run zfs")?;
    ensure!(
        out.status.success(),
        "zfs {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A fresh child dataset of `parent` for one check, and a snapshotter on it.
fn fresh(work: &Path, parent: &str, name: &str) -> Result<(Zfs, String, PathBuf)> {
    let ds = format!("{parent}/{name}");
    let _ = zfs_cmd(&["destroy", "-r", &ds]);
    zfs_cmd(&["create", "-o", "mountpoint=none", &ds])?;
    let root = work.join(name);
    let _ = std::fs::remove_dir_all(&root);
    let z = Zfs::open(&root, &config(&ds)).context("open zfs snapshotter")?;
    Ok((z, ds, root))
}

/// Runs `op` and returns the commands it ran and how long it took.
fn counted(
    z: &Zfs,
    op: impl FnOnce() -> berth_engine::snapshots::Result<()>,
) -> Result<(Vec<String>, Duration)> {
    let before = z.runner().count();
    let t = Instant::now();
    op()?;
    let took = t.elapsed();
    let n = (z.runner().count() - before) as usize;
    let recent = z.runner().recent();
    Ok((recent[recent.len() - n..].to_vec(), took))
}

fn scaling(work: &Path, parent: &str, ns: &str) -> Result<()> {
    let ns: Vec<usize> = ns
        .split(',')
        .map(|n| n.parse().with_context(|| format!("bad count {n:?}")))
        .collect::<Result<_>>()?;
    let mut table: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    for &n in &ns {
        let started = Instant::now();
        let (z, ds, root) = fresh(work, parent, &format!("scale-{n}"))?;
        // n existing snapshots: a chain of committed layers (every fifth) with active
        // clones on each (cheaper to make under TCG: one command each).
        let mut top = String::new();
        for i in 0..n {
            let key = format!("pop-a{i}");
            z.prepare(&key, &top, Labels::new())?;
            if i % 5 != 0 {
                continue; // stays active
            }
            let name = format!("pop-c{i}");
            z.commit(&name, &key, Labels::new())?;
            top = name;
        }
        let populated = started.elapsed();
        let t = Instant::now();
        let ops: Vec<(&'static str, (Vec<String>, Duration))> = vec![
            (
                "prepare (no parent)",
                counted(&z, || z.prepare("s-a", "", Labels::new()).map(drop))?,
            ),
            ("usage (active)", counted(&z, || z.usage("s-a").map(drop))?),
            (
                "commit",
                counted(&z, || z.commit("s-c", "s-a", Labels::new()))?,
            ),
            (
                "prepare (parent)",
                counted(&z, || z.prepare("s-b", "s-c", Labels::new()).map(drop))?,
            ),
            (
                "view",
                counted(&z, || z.view("s-v", &top, Labels::new()).map(drop))?,
            ),
            ("mounts", counted(&z, || z.mounts("s-b").map(drop))?),
            ("stat", counted(&z, || z.stat("s-c").map(drop))?),
            (
                "usage (committed)",
                counted(&z, || z.usage("s-c").map(drop))?,
            ),
            ("walk", counted(&z, || z.walk(&[], &mut |_| Ok(())))?),
            ("remove (active)", counted(&z, || z.remove("s-b"))?),
            ("remove (view)", counted(&z, || z.remove("s-v"))?),
            ("remove (committed)", counted(&z, || z.remove("s-c"))?),
            ("cleanup", counted(&z, || z.cleanup())?),
        ];
        let measured = t.elapsed();
        for (op, (cmds, took)) in &ops {
            if let Some(bad) = cmds.iter().find(|c| c.starts_with("zfs list")) {
                bail!("{op} with {n} snapshots lists the pool: {bad}");
            }
            println!(
                "  n={n:<4} {op:<20} {} command(s) in {:>6.1} ms: {}",
                cmds.len(),
                took.as_secs_f64() * 1000.0,
                cmds.join(" | ")
            );
            table.entry(op).or_default().push(cmds.len());
        }
        println!(
            "zfs-scaling n={n}: populated in {:.1} s, operations in {:.2} s",
            populated.as_secs_f64(),
            measured.as_secs_f64()
        );
        z.close()?;
        drop(z);
        // The populated dataset stays: destroying n clones one by one costs minutes under
        // TCG (~225 s for n = 200) and proves nothing here; the next run's `fresh` destroys
        // it before reusing the name.
        println!(
            "zfs-scaling n={n}: left {ds} and {} in place",
            root.display()
        );
    }
    for (op, counts) in &table {
        ensure!(
            counts.windows(2).all(|w| w[0] == w[1]),
            "{op}: command count depends on the number of snapshots: {counts:?} for n = {ns:?}"
        );
    }
    println!("zfs-scaling: command counts constant for n = {ns:?}, no listing");
    Ok(())
}

fn cleanup(work: &Path, parent: &str) -> Result<()> {
    let (z, ds, root) = fresh(work, parent, "cleanup")?;
    let mut top = String::new();
    for i in 0..5 {
        z.prepare(&format!("a{i}"), &top, Labels::new())?;
        z.commit(&format!("c{i}"), &format!("a{i}"), Labels::new())?;
        top = format!("c{i}");
    }
    let (c0, c1, c3) = (
        z.dataset_for("c0")?,
        z.dataset_for("c1")?,
        z.dataset_for("c3")?,
    );
    // A foreign snapshot (an autosnapshot tool) on c1's dataset, c3's dataset destroyed
    // behind berth's back (with its children's origin: destroy -R takes c4's clone too).
    zfs_cmd(&["snapshot", &format!("{c1}@autosnap-1")])?;
    zfs_cmd(&["destroy", "-R", &c3])?;
    // A clone berth does not know of, on c0's snapshot: c0's destroy must fail and be retried.
    let foreign = format!("{ds}/foreign-clone");
    zfs_cmd(&["clone", &format!("{c0}@snapshot"), &foreign])?;
    // GC: remove everything, top down, continuing past errors.
    let mut errors = Vec::new();
    for i in (0..5).rev() {
        if let Err(e) = z.remove(&format!("c{i}")) {
            errors.push(format!("c{i}: {e}"));
        }
    }
    let mut left = Vec::new();
    z.walk(&[], &mut |i| {
        left.push(i.name.clone());
        Ok(())
    })?;
    println!("zfs-cleanup: reports:\n  {}", z.reports().join("\n  "));
    ensure!(errors.is_empty(), "removals failed: {errors:?}");
    ensure!(left.is_empty(), "records left after removal: {left:?}");
    let reports = z.reports().join("\n");
    ensure!(
        reports.contains(&format!("{c3} was already gone")),
        "the dataset deleted behind berth's back is not reported"
    );
    ensure!(
        z.pending() == [c0.clone()],
        "pending destroys: {:?}, expected [{c0}]",
        z.pending()
    );
    zfs_cmd(&["destroy", &foreign])?;
    z.cleanup()?;
    ensure!(
        z.pending().is_empty(),
        "still pending after cleanup: {:?}",
        z.pending()
    );
    // Reconciliation at open: an orphan berth made is destroyed, an unknown dataset is kept
    // and reported.
    let orphan = format!("{ds}/9999");
    zfs_cmd(&[
        "create",
        "-o",
        &format!("{MANAGED_PROPERTY}=1"),
        "-o",
        "mountpoint=legacy",
        &orphan,
    ])?;
    let stranger = format!("{ds}/someone-elses");
    zfs_cmd(&["create", "-o", "mountpoint=legacy", &stranger])?;
    z.close()?;
    drop(z);
    let z = Zfs::open(&root, &config(&ds))?;
    // One listing, then one destroy for the orphan.
    let ran = z.runner().recent();
    let listings = ran.iter().filter(|c| c.starts_with("zfs list")).count();
    ensure!(
        listings == 1 && ran.len() == 2,
        "open ran {ran:?}, expected one listing and the orphan's destroy"
    );
    let listing = zfs_cmd(&["list", "-H", "-o", "name", "-r", &ds])?;
    ensure!(
        !listing.contains(&orphan),
        "orphan {orphan} survived the reconciliation"
    );
    ensure!(
        listing.contains(&stranger),
        "unknown dataset {stranger} was destroyed"
    );
    let reports = z.reports().join("\n");
    ensure!(
        reports.contains(&stranger),
        "unknown dataset not reported: {reports}"
    );
    println!("zfs-cleanup: foreign snapshot, missing dataset, failing destroy and reconciliation all handled");
    z.close()?;
    drop(z);
    zfs_cmd(&["destroy", "-r", &ds])?;
    let _ = std::fs::remove_dir_all(root);
    Ok(())
}

/// Prepare (a clone of a committed layer) + Commit latency with n existing snapshots.
fn bench(work: &Path, parent: &str, ns: &str, rounds: &str) -> Result<()> {
    let ns: Vec<usize> = ns
        .split(',')
        .map(|n| n.parse().with_context(|| format!("bad count {n:?}")))
        .collect::<Result<_>>()?;
    let rounds: usize = rounds
        .parse()
        .with_context(|| format!("bad round count {rounds:?}"))?;
    ensure!(rounds > 0, "rounds must be at least 1");
    let mut medians = Vec::new();
    for &n in &ns {
        let ds = format!("{parent}/bench-{n}");
        if zfs_cmd(&["list", "-H", "-o", "name", &ds]).is_err() {
            zfs_cmd(&["create", "-p", "-o", "mountpoint=none", &ds])?;
        }
        let root = work.join(format!("bench-{n}"));
        let z = Zfs::open(&root, &config(&ds)).context("open zfs snapshotter")?;
        // The same shape as zfs-scaling: a chain of committed layers (every fifth) with
        // active clones on each; only what an earlier run did not make.
        let t = Instant::now();
        let mut made = 0;
        let mut top = String::new();
        for i in 0..n {
            let key = format!("pop-a{i}");
            if z.stat(&key).is_err() {
                z.prepare(&key, &top, Labels::new())?;
                made += 1;
            }
            if i % 5 != 0 {
                continue;
            }
            let name = format!("pop-c{i}");
            if z.stat(&name).is_err() {
                z.commit(&name, &key, Labels::new())?;
                made += 1;
            }
            top = name;
        }
        println!(
            "zfs-bench n={n}: {made} snapshot operations to populate, {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let mut took = Vec::with_capacity(rounds);
        let mut commands = 0;
        for r in 0..rounds {
            let (a, c) = (format!("bench-a{r}"), format!("bench-c{r}"));
            let before = z.runner().count();
            let t = Instant::now();
            z.prepare(&a, &top, Labels::new())?;
            z.commit(&c, &a, Labels::new())?;
            took.push(t.elapsed());
            commands = z.runner().count() - before;
            z.remove(&c)?;
        }
        took.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mean = took.iter().map(|d| ms(*d)).sum::<f64>() / rounds as f64;
        let median = ms(took[rounds / 2]);
        println!(
            "zfs-bench n={n}: prepare+commit median {median:.1} ms, mean {mean:.1} ms, min {:.1} ms, max {:.1} ms over {rounds} rounds ({} commands each)",
            ms(took[0]),
            ms(took[rounds - 1]),
            commands
        );
        medians.push((n, median));
        z.close()?;
    }
    if let (Some(&(n0, first)), Some(&(n1, last))) = (medians.first(), medians.last()) {
        println!(
            "zfs-bench: median with {n1} snapshots / with {n0}: {:.2}x",
            last / first
        );
    }
    Ok(())
}
