//! Reproducibility across checkout paths: the workspace and a copy of its sources at another
//! path, each built with `scripts/build-static.sh`, must give byte-identical static
//! binaries, and `berth-image` must turn them into byte-identical `vmlinuz`,
//! `initramfs.img`, `cmdline` and `manifest.json` for the same `SOURCE_DATE_EPOCH`; another
//! `SOURCE_DATE_EPOCH` must change the initramfs.
//!
//! The workspace's own static build is one side (in `make test` it was just built by
//! `make static`, so it costs nothing here); the copy is the other, with its target directory
//! inside the copy (kept between runs, so only the first run on a machine pays for a whole
//! release build). Both build with their target directory under the checkout, so the one
//! `--remap-path-prefix` of the checkout covers generated sources too, and with the same
//! `BERTH_REVISION`. It runs in `make test` rather than in every quick edit loop, and it is a
//! plain `#[test]`: it fails, never skips, when a prerequisite (cargo, mkfs.erofs, the kernel
//! package via apt) is missing.

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

/// Runs the checkout's `scripts/build-static.sh` with the target directory under the checkout
/// and copies the binaries out. Returns the copy's directory.
fn build_static(checkout: &Path, revision: &str, keep: &Path) -> Result<PathBuf> {
    let started = Instant::now();
    let out = Command::new("sh")
        .arg(checkout.join("scripts/build-static.sh"))
        .current_dir(checkout)
        .env_remove("CARGO_TARGET_DIR")
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
    for name in [
        "berth",
        "berth-init",
        "berthd",
        "berthctl",
        "berth-image",
        "berth-test-agent",
    ] {
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
    let revision = workspace_revision();
    let mut bins = Vec::new();
    // The copy is taken first and the workspace built after it: the workspace's build then
    // sees the same sources unless someone edits them meanwhile (a difference would fail).
    copy_sources(&ws, checkouts[1])?;
    for (i, checkout) in checkouts.iter().enumerate() {
        bins.push(build_static(
            checkout,
            &revision,
            &scratch.join(format!("bin-{i}")),
        )?);
    }

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
    for i in 0..2 {
        build_image(checkouts[i], &bins[i], &outs[i], EPOCH)?;
    }
    for name in ["vmlinuz", "initramfs.img", "cmdline", "manifest.json"] {
        ensure!(
            same_file(&outs[0].join(name), &outs[1].join(name))?,
            "{name} differs between the two checkouts (see {} and {})",
            outs[0].display(),
            outs[1].display()
        );
    }
    eprintln!("identical artefacts: vmlinuz, initramfs.img, cmdline, manifest.json");

    let other = scratch.join("image-other-epoch");
    build_image(checkouts[0], &bins[0], &other, OTHER_EPOCH)?;
    ensure!(
        !same_file(&outs[0].join("initramfs.img"), &other.join("initramfs.img"))?,
        "initramfs.img did not change with SOURCE_DATE_EPOCH {EPOCH} → {OTHER_EPOCH}"
    );
    eprintln!("reproducibility test took {:.1?}", total.elapsed());
    Ok(())
}
