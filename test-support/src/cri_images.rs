//! Local equivalents of the public images critest hard-codes, built with umoci from Debian
//! files and pushed to a test registry, which berthd then serves through a mirror-only
//! `_default` (each reference keeps its repository path there):
//!
//! - the staging test images (`gcr.io/k8s-staging-cri-tools/test-image-*`): busybox with the
//!   users the image tests check, distinct images where they must differ, one image under
//!   several tags where they must not; `pause:3.9` of two registries;
//! - `registry.k8s.io/e2e-test-images/busybox:1.29-2`: Debian's busybox-static with every
//!   applet linked, `/etc/passwd` and `/etc/group`;
//! - `…/nginx:1.14-2` and the staging `hostnet-nginx-amd64` (port 12003): Debian's nginx with
//!   its libraries (the loader lists them), run as `nginx -g 'daemon off;'` with its pid file
//!   in `/var/run/nginx.pid`, plus busybox for the specs' shell commands;
//! - `…/httpd:2.4.39-4`: busybox's httpd on port 80 announcing itself on stdout;
//! - `…/nonewprivs:1.3`: a setuid-root program printing `Effective uid: N`, compiled here
//!   with rustc (static), run as uid 1000.
//!
//! The image pinned by a public digest (`test-image-digest@sha256:9700f9…`) cannot be
//! reproduced: its spec is skipped by name.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::registry::{busybox_layout_full, push_layout};

const STAGING: &str = "gcr.io/k8s-staging-cri-tools";
const E2E: &str = "registry.k8s.io/e2e-test-images";

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The repository path a mirror-only `_default` asks the registry for: the reference
/// without its registry host (`gcr.io/k8s-staging-cri-tools/x` → `k8s-staging-cri-tools/x`;
/// Docker Hub's `library/…` stays).
fn repo_path(reference: &str) -> &str {
    reference.split_once('/').map_or(reference, |(_, p)| p)
}

/// An image to build: which reference(s), and how it differs from the busybox base.
struct Spec {
    refs: Vec<String>,
    user: &'static str,
    env: &'static str,
    cmd: Vec<&'static str>,
    entrypoint: Vec<&'static str>,
    extra: Extra,
}

enum Extra {
    None,
    Nginx {
        port: u16,
    },
    NoNewPrivs,
    /// A user whose primary group is predefined in the image's /etc/group
    /// (`test-image-predefined-group`: uid 1000, gid 50000).
    PredefinedGroup,
}

fn specs() -> Vec<Spec> {
    let s = |r: &str| format!("{STAGING}/{r}");
    let plain = |refs: Vec<String>, user: &'static str, env: &'static str| Spec {
        refs,
        user,
        env,
        cmd: vec!["/bin/sh"],
        entrypoint: vec![],
        extra: Extra::None,
    };
    vec![
        plain(vec![s("test-image-latest:latest")], "", "IMG=latest"),
        plain(vec![s("test-image-tag:test")], "", "IMG=tag"),
        plain(vec![s("test-image-tag:all")], "", "IMG=all"),
        plain(vec![s("test-image-user-uid:latest")], "1002", "IMG=uid"),
        plain(vec![s("test-image-user-username:latest")], "www-data", "IMG=username"),
        plain(vec![s("test-image-user-uid-group:latest")], "1003:users", "IMG=uidgroup"),
        plain(
            vec![s("test-image-user-username-group:latest")],
            "www-data:users",
            "IMG=usernamegroup",
        ),
        plain(vec![s("test-image-1:latest")], "", "IMG=1"),
        plain(vec![s("test-image-2:latest")], "", "IMG=2"),
        plain(vec![s("test-image-3:latest")], "", "IMG=3"),
        plain(
            vec![s("test-image-tags:1"), s("test-image-tags:2"), s("test-image-tags:3")],
            "",
            "IMG=tags",
        ),
        plain(
            vec!["registry.k8s.io/pause:3.9".into(), "k8s.gcr.io/pause:3.9".into()],
            "",
            "IMG=pause",
        ),
        plain(vec![format!("{E2E}/busybox:1.29-2")], "", "IMG=busybox"),
        Spec {
            refs: vec![format!("{E2E}/httpd:2.4.39-4")],
            user: "",
            env: "IMG=httpd",
            cmd: vec![],
            entrypoint: vec![
                "/bin/sh",
                "-c",
                "mkdir -p /www && echo '<html>It works! (httpd)</html>' > /www/index.html && echo 'httpd: serving on port 80' && exec httpd -f -v -p 80 -h /www",
            ],
            extra: Extra::None,
        },
        Spec {
            refs: vec![format!("{E2E}/nginx:1.14-2")],
            user: "",
            env: "IMG=nginx",
            cmd: vec![],
            entrypoint: vec!["/usr/sbin/nginx", "-g", "daemon off;"],
            extra: Extra::Nginx { port: 80 },
        },
        Spec {
            refs: vec![s("hostnet-nginx-amd64:latest")],
            user: "",
            env: "IMG=hostnet-nginx",
            cmd: vec![],
            entrypoint: vec!["/usr/sbin/nginx", "-g", "daemon off;"],
            extra: Extra::Nginx { port: 12003 },
        },
        Spec {
            refs: vec![s("test-image-predefined-group:latest")],
            user: "1000",
            env: "IMG=predefined-group",
            cmd: vec!["/bin/sh"],
            entrypoint: vec![],
            extra: Extra::PredefinedGroup,
        },
        Spec {
            refs: vec![format!("{E2E}/nonewprivs:1.3")],
            user: "",
            env: "IMG=nonewprivs",
            cmd: vec![],
            entrypoint: vec!["/usr/local/bin/nnp"],
            extra: Extra::NoNewPrivs,
        },
    ]
}

/// The shared libraries the loader maps for `program`.
fn libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("/lib64/ld-linux-x86-64.so.2")
        .arg("--list")
        .arg(program)
        .output()?;
    ensure!(out.status.success(), "ld.so --list {}", program.display());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("=>").nth(1))
        .filter_map(|r| r.split_whitespace().next())
        .filter(|p| p.starts_with('/'))
        .map(PathBuf::from)
        .collect())
}

fn nginx_files(rootfs: &Path, port: u16) -> Result<()> {
    let bin = Path::new("/usr/sbin/nginx");
    ensure!(
        bin.is_file(),
        "/usr/sbin/nginx missing (Debian nginx-core, scripts/install-deps.sh)"
    );
    copy_with_libraries(bin, rootfs, bin)?;
    for d in [
        "etc/nginx",
        "var/log/nginx",
        "var/lib/nginx",
        "var/run",
        "usr/share/nginx/html",
    ] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy("/etc/nginx/mime.types", rootfs.join("etc/nginx/mime.types"))?;
    std::fs::write(
        rootfs.join("etc/nginx/nginx.conf"),
        format!(
            "user root;\nworker_processes 1;\npid /var/run/nginx.pid;\nerror_log stderr;\n\
             events {{ worker_connections 64; }}\n\
             http {{ include /etc/nginx/mime.types; access_log off;\n\
               server {{ listen {port}; root /usr/share/nginx/html; }} }}\n"
        ),
    )?;
    std::fs::write(
        rootfs.join("usr/share/nginx/html/index.html"),
        "<html><body><h1>Welcome to nginx!</h1></body></html>\n",
    )?;
    Ok(())
}

/// A static program printing its effective uid, setuid root (the e2e `nonewprivs` image).
fn nonewprivs_files(rootfs: &Path, work: &Path) -> Result<()> {
    let src = work.join("nnp.rs");
    std::fs::write(
        &src,
        "extern \"C\" { fn geteuid() -> u32; }\n\
         fn main() { println!(\"Effective uid: {}\", unsafe { geteuid() }); }\n",
    )?;
    let bin = work.join("nnp");
    run(Command::new("rustc")
        .args(["-O", "-C", "target-feature=+crt-static", "-o"])
        .arg(&bin)
        .arg(&src))?;
    let dest = rootfs.join("usr/local/bin");
    std::fs::create_dir_all(&dest)?;
    std::fs::copy(&bin, dest.join("nnp"))?;
    std::fs::set_permissions(
        dest.join("nnp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )?;
    Ok(())
}

/// Copies `program` and the shared libraries the loader maps for it (and the loader) into
/// `rootfs`, at their host paths.
fn copy_with_libraries(program: &Path, rootfs: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(rootfs.join(dest.parent().unwrap().strip_prefix("/")?))?;
    let target = rootfs.join(dest.strip_prefix("/")?);
    let _ = std::fs::remove_file(&target);
    std::fs::copy(program, &target)?;
    for lib in libraries(program)? {
        let real = std::fs::canonicalize(&lib)?;
        let d = rootfs.join(lib.strip_prefix("/")?);
        std::fs::create_dir_all(d.parent().unwrap())?;
        std::fs::copy(real, d)?;
    }
    std::fs::create_dir_all(rootfs.join("lib64"))?;
    std::fs::copy(
        std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2")?,
        rootfs.join("lib64/ld-linux-x86-64.so.2"),
    )?;
    Ok(())
}

/// Debian's dynamically linked `busybox` (package `busybox`, which conflicts with the
/// installed `busybox-static`): fetched once with `apt-get download` into the cache.
/// The static build is a "standalone shell" (it runs its applets without looking at `PATH`),
/// so `sh -c ls` never meets a masked `/bin/ls` and critest's MaskedPaths spec could not
/// see the mask; the e2e image's busybox, like this one, executes `/bin/ls`.
fn dynamic_busybox() -> Result<PathBuf> {
    let cache = PathBuf::from(
        std::env::var("BERTH_CACHE_DIR").unwrap_or_else(|_| "/var/cache/berth".into()),
    )
    .join("debs/busybox");
    let bin = cache.join("x/bin/busybox");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&cache)?;
    run(Command::new("apt-get")
        .args(["download", "busybox"])
        .current_dir(&cache))?;
    let deb = std::fs::read_dir(&cache)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download busybox left no .deb")?;
    run(Command::new("dpkg")
        .arg("-x")
        .arg(&deb)
        .arg(cache.join("x")))?;
    ensure!(bin.is_file(), "{} missing after dpkg -x", bin.display());
    Ok(bin)
}

/// The base every image starts from: busybox with every applet, made dynamic (see
/// [`dynamic_busybox`]), plus `pgrep` and `ipcs`, which Debian's busybox builds lack and
/// the specs run (as small scripts over /proc).
fn base_layout(work: &Path) -> Result<PathBuf> {
    let layout = busybox_layout_full(&work.join("base"))?;
    let image = format!("{}:v1", layout.display());
    let bundle = work.join("base-bundle");
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle))?;
    let rootfs = bundle.join("rootfs");
    copy_with_libraries(&dynamic_busybox()?, &rootfs, Path::new("/bin/busybox"))?;
    let scripts = [
        (
            "pgrep",
            r#"#!/bin/sh
# pgrep NAME: pids whose comm is NAME (exit 1 when none).
found=1
for d in /proc/[0-9]*; do
  [ "$(cat $d/comm 2>/dev/null)" = "$1" ] && { echo "${d#/proc/}"; found=0; }
done
exit $found
"#,
        ),
        (
            "ipcs",
            r#"#!/bin/sh
# ipcs [-m]: the shared memory segments of this IPC namespace.
echo '------ Shared Memory Segments --------'
cat /proc/sysvipc/shm
"#,
        ),
    ];
    for (name, text) in scripts {
        let p = rootfs.join("bin").join(name);
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle))?;
    Ok(layout)
}

/// Builds every image and pushes it to `registry` (`host:port`, plain HTTP), from inside
/// `netns` when given. Returns the references pushed.
pub fn push_all(work: &Path, registry: &str, netns: Option<&str>) -> Result<Vec<String>> {
    let layout = base_layout(work)?;
    let image = |tag: &str| format!("{}:{tag}", layout.display());
    let mut pushed = Vec::new();
    for (n, spec) in specs().into_iter().enumerate() {
        let tag = format!("img{n}");
        run(Command::new("umoci")
            .args(["config", "--image"])
            .arg(image("v1"))
            .args(["--tag", &tag, "--config.env", spec.env]))?;
        let mut cfg = Command::new("umoci");
        cfg.args(["config", "--image"]).arg(image(&tag));
        if !spec.user.is_empty() {
            cfg.args(["--config.user", spec.user]);
        }
        if !spec.cmd.is_empty() {
            cfg.arg("--clear=config.cmd");
            for c in &spec.cmd {
                cfg.args(["--config.cmd", c]);
            }
        }
        if !spec.entrypoint.is_empty() {
            cfg.arg("--clear=config.cmd");
            for e in &spec.entrypoint {
                cfg.args(["--config.entrypoint", e]);
            }
        }
        run(&mut cfg)?;
        if !matches!(spec.extra, Extra::None) {
            let bundle = work.join(format!("bundle-{tag}"));
            run(Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(image(&tag))
                .arg(&bundle))?;
            let rootfs = bundle.join("rootfs");
            match spec.extra {
                Extra::Nginx { port } => nginx_files(&rootfs, port)?,
                Extra::NoNewPrivs => nonewprivs_files(&rootfs, work)?,
                Extra::PredefinedGroup => {
                    use std::io::Write;
                    let mut p = std::fs::OpenOptions::new()
                        .append(true)
                        .open(rootfs.join("etc/passwd"))?;
                    writeln!(p, "user-defined-in-image:x:1000:50000::/home:/bin/sh")?;
                    let mut g = std::fs::OpenOptions::new()
                        .append(true)
                        .open(rootfs.join("etc/group"))?;
                    writeln!(g, "group-defined-in-image:x:50000:user-defined-in-image")?;
                }
                Extra::None => {}
            }
            run(Command::new("umoci")
                .args(["repack", "--image"])
                .arg(image(&tag))
                .arg(&bundle))?;
            if matches!(spec.extra, Extra::NoNewPrivs) {
                run(Command::new("umoci")
                    .args(["config", "--image"])
                    .arg(image(&tag))
                    .args(["--config.user", "1000"]))?;
            }
        }
        for r in &spec.refs {
            push_layout(
                &layout,
                &tag,
                &format!("{registry}/{}", repo_path(r)),
                None,
                netns,
            )?;
            pushed.push(r.clone());
        }
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_drop_the_host() {
        assert_eq!(
            repo_path("gcr.io/k8s-staging-cri-tools/test-image-1:latest"),
            "k8s-staging-cri-tools/test-image-1:latest"
        );
        assert_eq!(repo_path("registry.k8s.io/pause:3.9"), "pause:3.9");
    }
}
