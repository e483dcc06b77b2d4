//! The root image's tree (see "Root image" in `docs/architecture.md`): the multi-call binary
//! and its applet links, configuration, os-release, kernel modules and mount points. Test
//! images add the test agent and a service entry starting it; production images never carry
//! the agent, a shell or busybox.

use std::fs;
use std::path::{Path, PathBuf};

use crate::modules::{ModuleIndex, ModuleSet, ModulesError};
use crate::tree::{Tree, TreeError};

/// Where the test agent lives in test images.
pub const TEST_AGENT_PATH: &str = "usr/libexec/berth/berth-test-agent";

/// The `[[service]]` block appended to a test image's `init.toml`.
pub const TEST_AGENT_SERVICE: &str = r#"
[[service]]
name = "test-agent"
path = "/usr/libexec/berth/berth-test-agent"
args = ["--port", "org.berth.test"]
"#;

/// Mount points that exist (empty) in every root image.
pub const MOUNT_POINTS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("mnt", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("var", 0o755),
];

/// The configuration files copied from the config directory into `/etc/berth`.
pub const CONFIG_FILES: &[&str] = &["init.toml", "berthd.toml"];

/// The root tree could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A binary is missing from `--bin-dir`.
    #[error("{} not found (build it with scripts/build-static.sh and pass its directory as --bin-dir)", .0.display())]
    MissingBinary(PathBuf),
    /// A configuration file is missing from the config directory.
    #[error("configuration file {} not found (see --config-dir)", .0.display())]
    MissingConfig(PathBuf),
    /// A configuration file could not be read.
    #[error("cannot read {}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is not valid TOML; caught here rather than at boot.
    #[error("{} is not valid TOML", path.display())]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// The parse error (with line and column).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// Adding an entry failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// Adding the modules failed.
    #[error(transparent)]
    Modules(#[from] ModulesError),
    /// Adding a host tool failed.
    #[error(transparent)]
    HostTool(#[from] crate::hosttools::HostToolError),
}

/// What goes into the root tree.
#[derive(Debug, Clone)]
pub struct RootInputs<'a> {
    /// Directory holding the static `berth` (and `berth-test-agent`).
    pub bin_dir: &'a Path,
    /// Directory holding `init.toml` and `berthd.toml` (and optionally `certs.d/`).
    pub config_dir: &'a Path,
    /// Build a test image (adds the test agent).
    pub test: bool,
    /// The kernel's module index.
    pub index: &'a ModuleIndex,
    /// The root image's modules.
    pub modules: &'a ModuleSet,
    /// Host programs to carry with their libraries (`[root] host_tools`).
    pub host_tools: &'a [String],
}

/// `/etc/os-release` contents (os-release(5)).
pub fn os_release(test: bool) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let variant = if test {
        "VARIANT=\"test\"\nVARIANT_ID=test\n"
    } else {
        ""
    };
    format!(
        "NAME=\"berth\"\nID=berth\nVERSION_ID={version}\nVERSION=\"{version}\"\n\
PRETTY_NAME=\"berth {version}\"\n{variant}"
    )
}

/// Assembles the root tree.
pub fn root_tree(
    inputs: &RootInputs<'_>,
) -> Result<(Tree, Vec<crate::hosttools::ToolInfo>), RootfsError> {
    let mut tree = Tree::new();
    for (dir, mode) in MOUNT_POINTS {
        tree.dir(dir, *mode)?;
    }
    tree.symlink("bin", "usr/bin")?;
    tree.symlink("sbin", "usr/sbin")?;
    tree.symlink("lib", "usr/lib")?;
    tree.dir("usr/sbin", 0o755)?;
    tree.dir("usr/lib", 0o755)?;

    let berth = binary(inputs.bin_dir, "berth")?;
    tree.file("usr/bin/berth", 0o755, berth)?;
    tree.symlink("usr/bin/berthd", "berth")?;
    tree.symlink("usr/bin/berthctl", "berth")?;
    // PID 1 has its own binary: init's code only, so its resident set stays small.
    let init = binary(inputs.bin_dir, "berth-init")?;
    tree.file("usr/sbin/init", 0o755, init)?;

    tree.dir("etc/berth", 0o755)?;
    tree.bytes("etc/os-release", 0o644, os_release(inputs.test))?;
    // The root is read-only: init writes the resolver configuration under /run
    // (docs/networking.md).
    tree.symlink("etc/resolv.conf", "../run/berth/resolv.conf")?;
    for name in CONFIG_FILES {
        let path = inputs.config_dir.join(name);
        if !path.is_file() {
            return Err(RootfsError::MissingConfig(path));
        }
        let mut text = fs::read_to_string(&path).map_err(|source| RootfsError::ReadConfig {
            path: path.clone(),
            source,
        })?;
        if inputs.test && *name == "init.toml" {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(TEST_AGENT_SERVICE);
        }
        toml::from_str::<toml::Table>(&text).map_err(|source| RootfsError::InvalidConfig {
            path: path.clone(),
            source: Box::new(source),
        })?;
        tree.bytes(Path::new("etc/berth").join(name), 0o644, text)?;
    }
    let certs = inputs.config_dir.join("certs.d");
    if certs.is_dir() {
        add_dir_recursive(&mut tree, &certs, Path::new("etc/berth/certs.d"))?;
    }

    if inputs.test {
        let agent = binary(inputs.bin_dir, "berth-test-agent")?;
        tree.file(TEST_AGENT_PATH, 0o755, agent)?;
    }

    let prefix = Path::new("usr/lib/modules").join(inputs.index.release());
    inputs
        .index
        .add_to_tree(inputs.modules, &mut tree, &prefix)?;
    let tools = crate::hosttools::add_to_tree(inputs.host_tools, &mut tree)?;
    Ok((tree, tools))
}

fn binary(bin_dir: &Path, name: &str) -> Result<PathBuf, RootfsError> {
    let path = bin_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(RootfsError::MissingBinary(path))
    }
}

/// Copies a host directory's regular files and subdirectories (modes normalised to 0644/0755).
fn add_dir_recursive(tree: &mut Tree, src: &Path, dest: &Path) -> Result<(), RootfsError> {
    tree.dir(dest, 0o755)?;
    let read_err = |source| RootfsError::ReadConfig {
        path: src.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = fs::read_dir(src)
        .map_err(read_err)?
        .collect::<Result<_, _>>()
        .map_err(|source| RootfsError::ReadConfig {
            path: src.to_path_buf(),
            source,
        })?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let target = dest.join(entry.file_name());
        if path.is_dir() {
            add_dir_recursive(tree, &path, &target)?;
        } else if path.is_file() {
            tree.file(target, 0o644, path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::ModuleName;

    fn fixture(test: bool) -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let cfg = dir.path().join("cfg");
        let mods = dir.path().join("6.1.0-test");
        for d in [&bin, &cfg, &mods.join("kernel")] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(bin.join("berth"), b"\x7fELF berth").unwrap();
        fs::write(bin.join("berth-init"), b"\x7fELF init").unwrap();
        fs::write(bin.join("berth-test-agent"), b"\x7fELF agent").unwrap();
        fs::write(cfg.join("init.toml"), "[init]\nhostname = \"berth\"").unwrap();
        fs::write(cfg.join("berthd.toml"), "version = 2\n").unwrap();
        fs::write(mods.join("kernel/overlay.ko"), b"ko").unwrap();
        fs::write(mods.join("modules.dep"), "kernel/overlay.ko:\n").unwrap();
        let index = ModuleIndex::load(&mods).unwrap();
        let set = index
            .closure(
                &[ModuleName::from("overlay")],
                "root.modules",
                Path::new("x"),
            )
            .unwrap();
        let tree = root_tree(&RootInputs {
            bin_dir: &bin,
            config_dir: &cfg,
            test,
            index: &index,
            modules: &set,
            host_tools: &[],
        })
        .unwrap()
        .0;
        (dir, tree)
    }

    fn paths(tree: &Tree) -> Vec<String> {
        tree.listing()
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn production_tree_has_the_contract_layout_and_no_agent() {
        let (_dir, tree) = fixture(false);
        let listing = tree.listing().unwrap();
        let get = |p: &str| {
            listing
                .iter()
                .find(|e| e.path == p)
                .unwrap_or_else(|| panic!("{p} missing"))
        };
        assert_eq!(get("/sbin").target.as_deref(), Some("usr/sbin"));
        assert_eq!(get("/usr/sbin/init").target, None, "init is its own binary");
        assert_eq!(get("/usr/sbin/init").mode, "0755");
        assert_eq!(get("/usr/bin/berthctl").target.as_deref(), Some("berth"));
        assert_eq!(get("/usr/bin/berth").mode, "0755");
        assert_eq!(get("/tmp").mode, "1777");
        get("/usr/lib/modules/6.1.0-test/kernel/overlay.ko");
        get("/usr/lib/modules/6.1.0-test/modules.dep");
        get("/etc/berth/berthd.toml");
        let all = paths(&tree);
        assert!(!all.iter().any(|p| p.contains("test-agent")), "{all:?}");
        assert!(!all
            .iter()
            .any(|p| p.ends_with("/sh") || p.contains("busybox")));
    }

    #[test]
    fn test_tree_adds_agent_and_service() {
        let (_dir, tree) = fixture(true);
        assert!(tree.contains(TEST_AGENT_PATH));
        let init = tree
            .iter()
            .find(|(p, _)| *p == Path::new("etc/berth/init.toml"))
            .map(|(_, n)| n.clone())
            .unwrap();
        let crate::tree::Node::File {
            source: crate::tree::Source::Bytes(data),
            ..
        } = init
        else {
            panic!("init.toml should be generated");
        };
        let text = String::from_utf8(data).unwrap();
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let service = &parsed["service"].as_array().unwrap()[0];
        assert_eq!(service["name"].as_str(), Some("test-agent"));
        assert_eq!(
            service["path"].as_str(),
            Some("/usr/libexec/berth/berth-test-agent")
        );
        assert!(text.starts_with("[init]\nhostname = \"berth\"\n"));
    }

    #[test]
    fn tree_is_deterministic() {
        let (_a, one) = fixture(false);
        let (_b, two) = fixture(false);
        // Host paths differ (two temp dirs), the image contents must not.
        assert_eq!(one.listing().unwrap(), two.listing().unwrap());
    }
}
