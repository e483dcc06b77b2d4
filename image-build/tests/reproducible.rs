//! Reproducibility across checkout paths: the workspace and a copy of its sources at another
//! path, each built with `scripts/build-static.sh`, must give byte-identical static
//! binaries, and `berth-image` must turn them into byte-identical `vmlinuz`,
//! `initramfs.img`, `cmdline` and `manifest.json` for the same `SOURCE_DATE_EPOCH`; another
//! `SOURCE_DATE_EPOCH` must change the initramfs.
//!
//! The workspace's own static build is one side (in `make test` it was just built by
//! `make static`); the copy is the other. Both use the workspace's target directory:
//! build-static.sh names the checkout only in the flags of the workspace's own crates
//! (RUSTC_WORKSPACE_WRAPPER), so every dependency is built once and shared, and the copy
//! rebuilds exactly what lives in the checkout — every workspace crate and every link — which
//! is what a different checkout path could change. Cargo gives a workspace crate the same unit
//! hash in both checkouts (its metadata does not include the checkout path), so the copy's
//! build would replace the workspace's artefacts in the shared directory and the workspace
//! would have to be rebuilt after it: instead the workspace's own artefacts (every entry named
//! `berth*`) are moved aside while the copy builds and moved back after, with the copy's
//! removed ([`Stash`]), so the workspace's second build is a no-op and `make run` afterwards
//! rebuilds nothing. Before, the copy had a target directory of its own and rebuilt all ~250
//! crates: 1,000–1,200 s on a fresh machine.
//!
//! The copy builds only the image's binaries (`berth`, whose applets `berthd` and `berthctl`
//! are links to it, and `berth-init`: `BERTH_STATIC_BINS`), not the host tool `berth-image`
//! nor the test image's agent and conformance binaries: every workspace member is still
//! selected, so each dependency has the same features and those two binaries are the same as
//! in the workspace's full build, which is what they are compared with. The three image
//! builds run at once (each is mostly one thread: mkfs.erofs, the cpio writer).
//! Both builds get the same `BERTH_REVISION`. It runs in `make test` rather than in every
//! quick edit loop, and it is a plain `#[test]`: it fails, never skips, when a prerequisite
//! (cargo, mkfs.erofs, the kernel package via apt) is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

/// The copy, at a path that differs from any checkout's in depth and length.
const CHECKOUT_B: &str = "/var/tmp/berth-repro-bb/checkout";
const EPOCH: &str = "1700000000";
const OTHER_EPOCH: &str = "1700000001";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("image-build sits in the workspace")
        .to_path_buf()
}

fn cache_dir() -> PathBuf {
    std::env::var_os("BERTH_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth"))
}

/// Fails with a clear message when a tool the test needs is missing.
fn require_tool(tool: &str, hint: &str) -> Result<()> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    ensure!(found, "prerequisite missing: `{tool}` not on PATH ({hint})");
    Ok(())
}

/// Copies what a build reads: the root manifests, `.cargo/` and every top-level directory
/// except build output and VCS metadata (`target/`, `out/`, other dot-directories). Everything already in
/// `to` except its `target/` is removed first.
fn copy_sources(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(to)? {
        let entry = entry?;
        if entry.file_name() == "target" {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))?;
    }
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `.cargo/config.toml` is build configuration (the static libseccomp link); other
        // dot-directories are VCS and editor state.
        if (name.starts_with('.') && name != ".cargo") || name == "target" || name == "out" {
            continue;
        }
        copy_tree(&entry.path(), &to.join(&*name))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        let name = from.file_name().unwrap_or_default();
        if name == "target" || name == "out" {
            return Ok(());
        }
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if meta.is_file() {
        fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)?;
    }
    Ok(())
}

/// The revision `scripts/build-static.sh` stamps into the workspace's binaries (the copy has
/// no `.git`, so it gets this one explicitly).
fn workspace_revision() -> String {
    if let Some(r) = std::env::var_os("BERTH_REVISION") {
        return r.to_string_lossy().into_owned();
    }
    Command::new("git")
        .arg("-C")
        .arg(workspace())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The binaries the image carries (`berthd` and `berthctl` are links to `berth`).
const IMAGE_BINARIES: [&str; 4] = ["berth", "berth-init", "berthd", "berthctl"];
/// What the copy builds to get them (`BERTH_STATIC_BINS` of build-static.sh).
const IMAGE_BUILD_BINS: &str = "berth berth-init";

/// Runs the checkout's `scripts/build-static.sh` with `target_dir` (building `bins` only, if
/// given) and copies the image's binaries out. Returns the copy's directory.
fn build_static(
    checkout: &Path,
    target_dir: &Path,
    revision: &str,
    bins: Option<&str>,
    keep: &Path,
) -> Result<PathBuf> {
    let started = Instant::now();
    let mut command = Command::new("sh");
    if let Some(bins) = bins {
        command.env("BERTH_STATIC_BINS", bins);
    }
    let out = command
        .arg(checkout.join("scripts/build-static.sh"))
        .current_dir(checkout)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("BERTH_REVISION", revision)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .context("running scripts/build-static.sh (is sh installed?)")?;
    if !out.status.success() {
        bail!(
            "scripts/build-static.sh in {} failed ({}):\n{}",
            checkout.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprintln!(
        "static build in {} took {:.1?}",
        checkout.display(),
        started.elapsed()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bin_dir = PathBuf::from(
        stdout
            .lines()
            .last()
            .context("build-static.sh printed no binary directory")?
            .trim(),
    );
    if keep.exists() {
        fs::remove_dir_all(keep)?;
    }
    fs::create_dir_all(keep)?;
    for name in IMAGE_BINARIES {
        let src = bin_dir.join(name);
        if src.is_file() {
            fs::copy(&src, keep.join(name))?;
        }
    }
    ensure!(
        keep.join("berth").is_file() && keep.join("berth-init").is_file(),
        "{} has no `berth` or `berth-init` binary after the static build",
        bin_dir.display()
    );
    Ok(keep.to_path_buf())
}

/// The workspace's own artefacts in a shared target directory, moved aside while another
/// checkout builds there: every entry whose name starts with `berth` or `libberth` (the
/// workspace's crates; no dependency is named so) in the output directories of the release
/// profile for the target and for the host (build scripts), and their `deps/`, `build/` and
/// `.fingerprint/` subdirectories. Cargo writes new files for a unit it rebuilds and never
/// touches a fresh unit's files, so moving them back (after removing what the other checkout
/// built) restores the directory exactly, modification times included.
struct Stash {
    moved: Vec<(PathBuf, PathBuf)>,
    dir: PathBuf,
}

impl Stash {
    fn dirs(target_dir: &Path) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for profile in [
            target_dir.join("x86_64-unknown-linux-gnu/release"),
            target_dir.join("release"),
        ] {
            for sub in ["", "deps", "build", ".fingerprint"] {
                dirs.push(profile.join(sub));
            }
        }
        dirs
    }

    fn ours(name: &std::ffi::OsStr) -> bool {
        let name = name.to_string_lossy();
        name.starts_with("berth") || name.starts_with("libberth")
    }

    /// Moves the workspace's artefacts of `target_dir` into `stash_dir`.
    fn take(target_dir: &Path, stash_dir: &Path) -> Result<Self> {
        if stash_dir.exists() {
            fs::remove_dir_all(stash_dir)?;
        }
        let mut moved = Vec::new();
        for (i, dir) in Self::dirs(target_dir).into_iter().enumerate() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            let aside = stash_dir.join(i.to_string());
            fs::create_dir_all(&aside)?;
            for entry in entries {
                let entry = entry?;
                if Self::ours(&entry.file_name()) {
                    let to = aside.join(entry.file_name());
                    fs::rename(entry.path(), &to)
                        .with_context(|| format!("moving {} aside", entry.path().display()))?;
                    moved.push((entry.path(), to));
                }
            }
        }
        Ok(Self {
            moved,
            dir: stash_dir.to_path_buf(),
        })
    }

    /// Removes what was built meanwhile under the same names and moves the artefacts back.
    fn restore(self, target_dir: &Path) -> Result<()> {
        for dir in Self::dirs(target_dir) {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let entry = entry?;
                if Self::ours(&entry.file_name()) {
                    let path = entry.path();
                    if entry.file_type()?.is_dir() {
                        fs::remove_dir_all(&path)?;
                    } else {
                        fs::remove_file(&path)?;
                    }
                }
            }
        }
        for (original, aside) in &self.moved {
            fs::rename(aside, original)
                .with_context(|| format!("moving {} back", original.display()))?;
        }
        fs::remove_dir_all(&self.dir)?;
        Ok(())
    }
}

fn build_image(checkout: &Path, bin_dir: &Path, out: &Path, epoch: &str) -> Result<()> {
    let started = Instant::now();
    let result = Command::new(env!("CARGO_BIN_EXE_berth-image"))
        .arg("build")
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(out)
        .arg("--definition")
        .arg(checkout.join("configs/image.toml"))
        .arg("--config-dir")
        .arg(checkout.join("configs"))
        .arg("--cache-dir")
        .arg(cache_dir())
        .env("SOURCE_DATE_EPOCH", epoch)
        .output()
        .context("running berth-image")?;
    if !result.status.success() {
        bail!(
            "berth-image build from {} failed ({}):\n{}",
            checkout.display(),
            result.status,
            String::from_utf8_lossy(&result.stderr)
        );
    }
    eprintln!(
        "image build from {} (SOURCE_DATE_EPOCH={epoch}) took {:.1?}",
        checkout.display(),
        started.elapsed()
    );
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> Result<bool> {
    Ok(
        fs::read(a).with_context(|| format!("reading {}", a.display()))?
            == fs::read(b).with_context(|| format!("reading {}", b.display()))?,
    )
}

/// Serialises runs of this test across processes (several engineers' `cargo test --workspace`
/// may run it at once; they share the checkout paths and the target directory). A lock held by
/// a process that no longer exists is taken over.
struct RunLock(PathBuf);

impl RunLock {
    fn acquire(path: PathBuf) -> Result<Self> {
        let waited = Instant::now();
        let mut announced = false;
        loop {
            match fs::create_dir(&path) {
                Ok(()) => {
                    fs::write(path.join("pid"), std::process::id().to_string())?;
                    if announced {
                        eprintln!("waited {:.1?} for {}", waited.elapsed(), path.display());
                    }
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(path.join("pid")).unwrap_or_default();
                    let alive =
                        !owner.trim().is_empty() && Path::new("/proc").join(owner.trim()).exists();
                    if !alive && waited.elapsed().as_secs() >= 2 {
                        // Dead owner (or one that never wrote its pid): take it over.
                        let _ = fs::remove_dir_all(&path);
                        continue;
                    }
                    if !announced {
                        eprintln!(
                            "another reproducibility run (pid {}) holds {}; waiting",
                            owner.trim(),
                            path.display()
                        );
                        announced = true;
                    }
                    ensure!(
                        waited.elapsed().as_secs() < 3600,
                        "gave up waiting for {} after an hour",
                        path.display()
                    );
                    std::thread::sleep(std::time::Duration::from_secs(2));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("creating lock {}", path.display()))
                }
            }
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn artefacts_are_identical_across_checkout_paths() -> Result<()> {
    let total = Instant::now();
    require_tool("cargo", "install a Rust toolchain")?;
    require_tool(
        "mkfs.erofs",
        "run `make deps` or apt-get install erofs-utils",
    )?;
    require_tool("apt-get", "the kernel comes from Debian's archive")?;
    require_tool("dpkg-deb", "the kernel package is unpacked with dpkg-deb")?;
    require_tool("depmod", "run `make deps` or apt-get install kmod")?;

    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| {
        format!(
            "prerequisite missing: cannot create cache {}",
            cache.display()
        )
    })?;
    let _lock = RunLock::acquire(cache.join("repro.lock"))?;
    // The shared target directory of earlier versions of this test is no longer used.
    let _ = fs::remove_dir_all(cache.join("repro-target"));
    let scratch = Path::new("/tmp/berth-repro-results");
    if scratch.exists() {
        fs::remove_dir_all(scratch)?;
    }
    fs::create_dir_all(scratch)?;

    let ws = workspace();
    let checkouts = [ws.as_path(), Path::new(CHECKOUT_B)];
    // The workspace's target directory (as `make static` used it), shared by both builds.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| ws.join("target"));
    let revision = workspace_revision();
    let mut bins = Vec::new();
    // The copy is taken first and the workspace built after it: the workspace's build then
    // sees the same sources unless someone edits them meanwhile (a difference would fail).
    // The copy builds in the shared target directory with the workspace's own artefacts
    // moved aside (see [`Stash`]); the workspace's build after it finds them fresh.
    copy_sources(&ws, checkouts[1])?;
    // A target directory the copy kept from earlier versions of this test is not used.
    let _ = fs::remove_dir_all(checkouts[1].join("target"));
    // Inside the target directory: the moves are renames on one file system.
    let stash = Stash::take(&target_dir, &target_dir.join("repro-stash"))?;
    let copy = build_static(
        checkouts[1],
        &target_dir,
        &revision,
        Some(IMAGE_BUILD_BINS),
        &scratch.join("bin-1"),
    );
    stash.restore(&target_dir)?;
    let copy = copy?;
    bins.push(build_static(
        checkouts[0],
        &target_dir,
        &revision,
        None,
        &scratch.join("bin-0"),
    )?);
    bins.push(copy);

    let mut compared = Vec::new();
    for entry in fs::read_dir(&bins[0])? {
        let name = entry?.file_name();
        let (a, b) = (bins[0].join(&name), bins[1].join(&name));
        ensure!(
            b.is_file(),
            "{} built in one checkout only",
            name.to_string_lossy()
        );
        ensure!(
            same_file(&a, &b)?,
            "static binary {} differs between {} and {CHECKOUT_B} (see {} and {})",
            name.to_string_lossy(),
            ws.display(),
            a.display(),
            b.display()
        );
        compared.push(name.to_string_lossy().into_owned());
    }
    compared.sort();
    eprintln!("identical static binaries: {}", compared.join(", "));

    let outs: Vec<PathBuf> = (0..2).map(|i| scratch.join(format!("image-{i}"))).collect();
    let other = scratch.join("image-other-epoch");
    let images = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let builds = [
            scope.spawn(|| build_image(checkouts[0], &bins[0], &outs[0], EPOCH)),
            scope.spawn(|| build_image(checkouts[1], &bins[1], &outs[1], EPOCH)),
            scope.spawn(|| build_image(checkouts[0], &bins[0], &other, OTHER_EPOCH)),
        ];
        for build in builds {
            build
                .join()
                .map_err(|_| anyhow::anyhow!("an image build thread panicked"))??;
        }
        Ok(())
    })?;
    eprintln!("three image builds at once took {:.1?}", images.elapsed());
    for name in ["vmlinuz", "initramfs.img", "cmdline", "manifest.json"] {
        ensure!(
            same_file(&outs[0].join(name), &outs[1].join(name))?,
            "{name} differs between the two checkouts (see {} and {})",
            outs[0].display(),
            outs[1].display()
        );
    }
    eprintln!("identical artefacts: vmlinuz, initramfs.img, cmdline, manifest.json");

    ensure!(
        !same_file(&outs[0].join("initramfs.img"), &other.join("initramfs.img"))?,
        "initramfs.img did not change with SOURCE_DATE_EPOCH {EPOCH} → {OTHER_EPOCH}"
    );
    eprintln!("reproducibility test took {:.1?}", total.elapsed());
    Ok(())
}
