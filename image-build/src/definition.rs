//! The image definition (`configs/image.toml`): which kernel, which command line, which modules
//! go where, and how the root image and the initramfs are compressed.
//!
//! Unknown keys are refused, and every error names the file, the line and the dotted key, so a
//! typo never silently falls back to a default.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// Default kernel metapackage: Debian's cloud flavour boots fastest under QEMU.
pub const DEFAULT_KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";
/// The generic flavour's metapackage: the drivers bare metal needs.
pub const GENERIC_KERNEL_PACKAGE: &str = "linux-image-amd64";
/// Default kernel command line.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 quiet panic=-1";

/// An image definition could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The file could not be read.
    #[error("cannot read image definition {}", path.display())]
    Read {
        /// The definition file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{}:{line}: {}: {message}", path.display(), key_display(key))]
    Invalid {
        /// The definition file.
        path: PathBuf,
        /// 1-based line of the offending key or value (0 if unknown).
        line: usize,
        /// Dotted key path (empty when the error is not about one key).
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn key_display(key: &str) -> String {
    if key.is_empty() || key == "." {
        "syntax".to_string()
    } else {
        format!("key `{key}`")
    }
}

/// A whole image definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ImageDefinition {
    /// The kernel and its command line.
    #[serde(default)]
    pub kernel: KernelSection,
    /// The initramfs (stage 1).
    #[serde(default)]
    pub initramfs: InitramfsSection,
    /// The read-only root image (stage 2).
    #[serde(default)]
    pub root: RootSection,
}

/// `[kernel]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSection {
    /// Which Debian kernel flavour: `cloud` (VMs) or `generic` (bare metal). Picks
    /// `package` when the definition does not name one.
    #[serde(default)]
    pub flavour: KernelFlavour,
    /// Debian package: a metapackage (resolved at build time) or a versioned one. Defaults to
    /// the flavour's metapackage ([`ImageDefinition::parse`] fills it in).
    #[serde(default = "default_package")]
    pub package: PackageName,
    /// Kernel command line, one line.
    #[serde(default = "default_cmdline")]
    pub cmdline: Cmdline,
}

impl Default for KernelSection {
    fn default() -> Self {
        Self {
            flavour: KernelFlavour::default(),
            package: default_package(),
            cmdline: default_cmdline(),
        }
    }
}

/// A Debian kernel flavour for amd64.
///
/// The cloud flavour leaves out most physical hardware (no e1000e, igb, ixgbe, ahci,
/// r8169, …; Debian's `linux` source, `debian/config/amd64/config.cloud-amd64`) and so is
/// smaller and boots faster in a VM; bare metal needs the generic one. Which modules are
/// loaded is still decided at boot by coldplug (modaliases in `/sys`), so the same image
/// definition works for both once the root image carries the modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KernelFlavour {
    /// `linux-image-cloud-amd64`: VMs (QEMU/KVM, clouds).
    #[default]
    Cloud,
    /// `linux-image-amd64`: bare metal.
    Generic,
}

impl KernelFlavour {
    /// The flavour's metapackage, resolved at build time to the current versioned package.
    pub fn metapackage(self) -> &'static str {
        match self {
            Self::Cloud => DEFAULT_KERNEL_PACKAGE,
            Self::Generic => GENERIC_KERNEL_PACKAGE,
        }
    }

    /// The flavour a Debian amd64 kernel package name belongs to, if it says
    /// (`linux-image-[<version>-]cloud-amd64` or `linux-image-[<version>-]amd64`).
    pub fn of_package(package: &str) -> Option<Self> {
        let rest = package.strip_prefix("linux-image-")?;
        if rest.ends_with("cloud-amd64") {
            Some(Self::Cloud)
        } else if rest.ends_with("amd64") && !rest.contains("-rt-") && !rest.starts_with("rt-") {
            Some(Self::Generic)
        } else {
            None
        }
    }
}

impl fmt::Display for KernelFlavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cloud => "cloud",
            Self::Generic => "generic",
        })
    }
}

/// `[initramfs]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitramfsSection {
    /// How the cpio archive is compressed.
    #[serde(default)]
    pub compression: InitramfsCompression,
    /// Modules stage 1 needs to mount the root image (their dependencies are added).
    #[serde(default = "default_initramfs_modules")]
    pub modules: Vec<ModuleName>,
}

impl Default for InitramfsSection {
    fn default() -> Self {
        Self {
            compression: InitramfsCompression::default(),
            modules: default_initramfs_modules(),
        }
    }
}

/// `[root]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSection {
    /// File-system format of the root image.
    #[serde(default)]
    pub format: RootFormat,
    /// Compression inside the root image.
    #[serde(default)]
    pub compression: RootCompression,
    /// Modules shipped in the root image (their dependencies are added).
    #[serde(default = "default_root_modules")]
    pub modules: Vec<ModuleName>,
    /// Dynamically linked programs copied from the build host with their libraries
    /// (absolute paths; see `hosttools.rs`).
    #[serde(default = "default_host_tools")]
    pub host_tools: Vec<String>,
    /// Image archives (OCI layout or `docker save` `.tar` files) put into
    /// `/usr/share/berth/images`, which berthd imports at start. Relative paths are resolved
    /// against the definition file's directory.
    #[serde(default)]
    pub preload: Vec<PathBuf>,
    /// Also preload the demo image built from Debian's `busybox-static` (`demo.rs`).
    #[serde(default = "default_true")]
    pub demo_image: bool,
}

fn default_true() -> bool {
    true
}

impl Default for RootSection {
    fn default() -> Self {
        Self {
            format: RootFormat::default(),
            compression: RootCompression::default(),
            modules: default_root_modules(),
            host_tools: default_host_tools(),
            preload: Vec::new(),
            demo_image: true,
        }
    }
}

/// `mke2fs` and `e2fsck`: init formats and checks the ext4 state partition with them.
fn default_host_tools() -> Vec<String> {
    vec!["/usr/sbin/mke2fs".into(), "/usr/sbin/e2fsck".into()]
}

/// Compression of the initramfs cpio archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InitramfsCompression {
    /// Plain cpio: fastest to boot under QEMU TCG, where decompression is emulated.
    #[default]
    None,
    /// gzip (level 9).
    Gzip,
    /// zstd (level 19).
    Zstd,
}

impl fmt::Display for InitramfsCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        })
    }
}

/// File-system format of the root image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RootFormat {
    /// erofs, read-only by design.
    #[default]
    Erofs,
}

/// Compression inside the erofs root image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RootCompression {
    /// lz4hc: smaller image, files decompressed on read.
    #[default]
    Lz4hc,
    /// Uncompressed.
    None,
}

impl fmt::Display for RootCompression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lz4hc => "lz4hc",
            Self::None => "none",
        })
    }
}

/// A kernel module name as `modprobe` spells it (`-` and `_` are equivalent).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ModuleName(String);

impl ModuleName {
    /// The name normalised as in `modules.dep` lookups (`-` as `_`).
    pub fn normalized(&self) -> String {
        berth_layout::modules::module_name(&self.0)
    }
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ModuleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let valid = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "invalid module name {s:?} (letters, digits, `_` and `-` only)"
            )));
        }
        Ok(Self(s))
    }
}

impl From<&str> for ModuleName {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

/// A Debian package name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PackageName(String);

impl PackageName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for PackageName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // Debian policy 5.6.1: lowercase letters, digits, `+`, `-`, `.`; at least two chars,
        // starting with an alphanumeric.
        let valid = s.len() >= 2
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
            });
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "invalid Debian package name {s:?}"
            )));
        }
        Ok(Self(s))
    }
}

/// A kernel command line: one non-empty line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Cmdline(String);

impl Cmdline {
    /// The command line.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Cmdline {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains(['\n', '\r', '\0']) {
            return Err(serde::de::Error::custom(
                "the kernel command line must be a single line",
            ));
        }
        // x86 COMMAND_LINE_SIZE is 2048 including the terminating NUL.
        if s.len() > 2047 {
            return Err(serde::de::Error::custom(
                "the kernel command line is longer than 2047 bytes",
            ));
        }
        Ok(Self(s.trim().to_string()))
    }
}

fn default_package() -> PackageName {
    PackageName(DEFAULT_KERNEL_PACKAGE.to_string())
}

fn default_cmdline() -> Cmdline {
    Cmdline(DEFAULT_CMDLINE.to_string())
}

fn default_initramfs_modules() -> Vec<ModuleName> {
    ["loop", "erofs"]
        .into_iter()
        .map(ModuleName::from)
        .collect()
}

fn default_root_modules() -> Vec<ModuleName> {
    [
        "virtio_pci",
        "virtio_console",
        "virtio_net",
        "virtio_blk",
        "overlay",
    ]
    .into_iter()
    .map(ModuleName::from)
    .collect()
}

impl ImageDefinition {
    /// Loads and validates a definition file.
    pub fn load(path: &Path) -> Result<Self, DefinitionError> {
        let text = std::fs::read_to_string(path).map_err(|source| DefinitionError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses definition text; `path` is only used in error messages. Without
    /// `kernel.package` the package is `kernel.flavour`'s metapackage; with both, they must
    /// agree.
    pub fn parse(text: &str, path: &Path) -> Result<Self, DefinitionError> {
        let mut def = Self::parse_fields(text, path)?;
        let table: toml::Table = text.parse().unwrap_or_default();
        let kernel = table.get("kernel").and_then(toml::Value::as_table);
        let has = |key: &str| kernel.is_some_and(|k| k.contains_key(key));
        if !has("package") {
            def.kernel.package = PackageName(def.kernel.flavour.metapackage().to_string());
        } else if has("flavour") {
            let named = KernelFlavour::of_package(def.kernel.package.as_str());
            if named.is_some_and(|f| f != def.kernel.flavour) {
                return Err(DefinitionError::Invalid {
                    path: path.to_path_buf(),
                    line: text
                        .lines()
                        .position(|l| l.trim_start().starts_with("package"))
                        .map_or(0, |i| i + 1),
                    key: "kernel.package".into(),
                    message: format!(
                        "{:?} is a {} kernel but kernel.flavour is {:?}; drop one of the two",
                        def.kernel.package.as_str(),
                        named.map(|f| f.to_string()).unwrap_or_default(),
                        def.kernel.flavour.to_string(),
                    ),
                });
            }
        }
        Ok(def)
    }

    fn parse_fields(text: &str, path: &Path) -> Result<Self, DefinitionError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|err| {
            let key = err.path().to_string();
            let inner = err.into_inner();
            let line = inner
                .span()
                .map(|span| line_of(text, span.start))
                .unwrap_or(0);
            DefinitionError::Invalid {
                path: path.to_path_buf(),
                line,
                key,
                message: inner.message().trim().to_string(),
            }
        })
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ImageDefinition, DefinitionError> {
        ImageDefinition::parse(text, Path::new("configs/image.toml"))
    }

    fn invalid(text: &str) -> (usize, String, String) {
        match parse(text) {
            Err(DefinitionError::Invalid {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let def = parse("").unwrap();
        assert_eq!(def, ImageDefinition::default());
        assert_eq!(def.kernel.package.as_str(), DEFAULT_KERNEL_PACKAGE);
        assert_eq!(def.kernel.cmdline.as_str(), DEFAULT_CMDLINE);
        assert_eq!(def.root.compression, RootCompression::Lz4hc);
    }

    #[test]
    fn full_file_parses() {
        let def = parse(
            r#"
[kernel]
package = "linux-image-6.1.0-56-cloud-amd64"
cmdline = "console=ttyS0"
[initramfs]
compression = "zstd"
modules = ["loop", "erofs"]
[root]
format = "erofs"
compression = "none"
modules = ["virtio-net"]
"#,
        )
        .unwrap();
        assert_eq!(def.initramfs.compression, InitramfsCompression::Zstd);
        assert_eq!(def.root.compression, RootCompression::None);
        assert_eq!(def.root.modules[0].normalized(), "virtio_net");
    }

    #[test]
    fn unknown_top_level_key_names_line_and_key() {
        let (line, key, message) =
            invalid("[kernel]\npackage = \"linux-image-cloud-amd64\"\n\n[rooot]\n");
        assert_eq!(line, 4, "{message}");
        assert!(message.contains("rooot"), "{message}");
        let _ = key;
    }

    #[test]
    fn unknown_nested_key_names_line_and_key() {
        let err = parse("[kernel]\npackage = \"linux-image-cloud-amd64\"\ncmd_line = \"x\"\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("configs/image.toml:3: "), "{text}");
        assert!(text.contains("cmd_line"), "{text}");
    }

    #[test]
    fn bad_value_names_line_and_dotted_key() {
        let (line, key, message) =
            invalid("[kernel]\n\n[initramfs]\nmodules = [\"loop\"]\ncompression = \"lzma\"\n");
        assert_eq!(line, 5, "{message}");
        assert_eq!(key, "initramfs.compression");
        assert!(message.contains("lzma"), "{message}");
    }

    #[test]
    fn bad_module_name_names_its_index() {
        let (line, key, message) =
            invalid("[root]\nmodules = [\n  \"virtio_net\",\n  \"bad name\",\n]\n");
        // toml reports the array's span: the line of the key.
        assert_eq!(line, 2, "{message}");
        assert!(message.contains("bad name"), "{message}");
        assert_eq!(key, "root.modules[1]");
    }

    #[test]
    fn multi_line_cmdline_is_refused() {
        let (line, key, _) = invalid("[kernel]\ncmdline = \"\"\"\na\nb\"\"\"\n");
        assert_eq!(line, 2);
        assert_eq!(key, "kernel.cmdline");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse("[kernel]\npackage = \n").unwrap_err();
        assert!(
            err.to_string().starts_with("configs/image.toml:2: "),
            "{err}"
        );
    }

    #[test]
    fn flavour_selects_the_package() {
        let def = parse("[kernel]\nflavour = \"generic\"\n").unwrap();
        assert_eq!(def.kernel.flavour, KernelFlavour::Generic);
        assert_eq!(def.kernel.package.as_str(), "linux-image-amd64");
        assert_eq!(
            parse("").unwrap().kernel.package.as_str(),
            "linux-image-cloud-amd64"
        );
        // A pinned package of the same flavour is fine, one of the other flavour is refused.
        let def =
            parse("[kernel]\nflavour = \"generic\"\npackage = \"linux-image-6.1.0-56-amd64\"\n")
                .unwrap();
        assert_eq!(def.kernel.package.as_str(), "linux-image-6.1.0-56-amd64");
        let (line, key, message) = invalid(
            "[kernel]\nflavour = \"generic\"\npackage = \"linux-image-6.1.0-56-cloud-amd64\"\n",
        );
        assert_eq!((line, key.as_str()), (3, "kernel.package"));
        assert!(
            message.contains("is a cloud kernel but kernel.flavour is \"generic\""),
            "{message}"
        );
        let (line, key, message) = invalid("[kernel]\nflavour = \"metal\"\n");
        assert_eq!((line, key.as_str()), (2, "kernel.flavour"));
        assert!(message.contains("metal"), "{message}");
        assert_eq!(KernelFlavour::of_package("linux-image-rt-amd64"), None);
        assert_eq!(
            KernelFlavour::of_package("linux-image-6.1.0-56-cloud-amd64"),
            Some(KernelFlavour::Cloud)
        );
    }

    #[test]
    fn shipped_definition_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/image.toml");
        ImageDefinition::load(&path).unwrap();
    }
}
