//! berth-cri's configuration: the `[cri]` table of a TOML file (default
//! [`DEFAULT_CONFIG_PATH`]; a missing file means every default).
//!
//! Everything berth-cri needs to find its peers and its plugins, nothing it remembers: state
//! lives in berthd (see `labels`). Unknown keys are errors, so a typo never silently falls
//! back to a default; the binary exits with [`berth_api::EXIT_CONFIG`] on them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where berth-cri looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/cri.toml";
/// The berthd namespace holding Kubernetes' images and sandboxes (containerd's convention).
pub const DEFAULT_NAMESPACE: &str = "k8s.io";

/// The whole file: only the `[cri]` table is read.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    cri: Config,
}

/// berth-cri's settings (`[cri]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The CRI gRPC socket kubelet and crictl connect to.
    pub address: PathBuf,
    /// berthd's ttrpc socket.
    pub berthd_address: String,
    /// The berthd namespace of CRI images and sandboxes.
    pub namespace: String,
    /// The sandbox ("pause") image kubelet may name: accepted and recorded on each sandbox,
    /// never pulled or run — a sandbox is berth's own `berth-pause` applet.
    pub sandbox_image: String,
    /// Where network namespaces of pods are pinned (bind-mounted files); `/run/netns` makes
    /// them visible to `ip netns`.
    pub netns_dir: PathBuf,
    /// The binary whose `berth-pause` applet holds a sandbox's namespaces; empty: this
    /// process's own executable (berth-cri is an applet of the same multi-call binary).
    pub pause_binary: PathBuf,
    /// Upper bound of one call to berthd (pulls: of each progress message).
    #[serde(with = "secs")]
    pub berthd_timeout: Duration,
    /// Snapshotter images are unpacked into ("": berthd's default).
    pub snapshotter: String,
    /// Files berth-cri derives from the records (a pod's `resolv.conf`, `hosts`,
    /// `hostname`, bind-mounted into its containers): a tmpfs. Nothing
    /// here is state: every file is written again from berthd's records when missing.
    pub state_dir: PathBuf,
    /// CNI settings.
    pub cni: CniConfig,
}

/// CNI settings (`[cri.cni]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Directories searched for plugin binaries, in order (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// Directory of network configurations: the first `*.conflist`/`*.conf`/`*.json` by
    /// name is the pod network, as in containerd and kubelet's CNI convention.
    pub conf_dir: PathBuf,
    /// Write [`CniConfig::default_conflist_name`] (a bridge network) into `conf_dir` at
    /// start when it holds no configuration. Off by default: an operator's node config or a
    /// network add-on usually owns that directory.
    pub write_default_conflist: bool,
    /// The default network's subnet (host-local IPAM).
    pub default_subnet: String,
    /// The default network's bridge device.
    pub default_bridge: String,
    /// host-local's lease directory in the default network (`dataDir`); empty: the
    /// plugin's own default, `/var/lib/cni/networks`.
    pub default_lease_dir: PathBuf,
    /// Upper bound of one plugin invocation.
    #[serde(with = "secs")]
    pub plugin_timeout: Duration,
    /// How often a DEL is tried before StopPodSandbox gives up (1 s apart).
    pub del_attempts: u32,
}

impl CniConfig {
    /// The file name of the default network's configuration.
    pub fn default_conflist_name(&self) -> &'static str {
        "10-berth-bridge.conflist"
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            address: PathBuf::from("/run/berth/cri.sock"),
            berthd_address: berth_api::address::DEFAULT_ADDRESS.to_owned(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            sandbox_image: "registry.k8s.io/pause:3.10".to_owned(),
            netns_dir: PathBuf::from("/run/netns"),
            pause_binary: PathBuf::new(),
            berthd_timeout: Duration::from_secs(30),
            snapshotter: String::new(),
            state_dir: PathBuf::from("/run/berth/cri"),
            cni: CniConfig::default(),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        Self {
            bin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            write_default_conflist: false,
            default_subnet: "10.88.0.0/16".to_owned(),
            default_bridge: "cni0".to_owned(),
            default_lease_dir: PathBuf::new(),
            plugin_timeout: Duration::from_secs(30),
            del_attempts: 3,
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Reads `path`; a missing file is every default when `required` is false.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<Config, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(f.cri)
    }
}

/// Durations as whole seconds in TOML (`berthd_timeout = 30`).
mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let n = u64::deserialize(d)?;
        if n == 0 {
            return Err(serde::de::Error::custom("must be at least 1 second"));
        }
        Ok(Duration::from_secs(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.address, PathBuf::from("/run/berth/cri.sock"));
        assert_eq!(c.namespace, "k8s.io");
        assert!(!c.cni.write_default_conflist);
        let c = Config::parse(
            "[cri]\naddress = \"/tmp/c.sock\"\nberthd_timeout = 5\n[cri.cni]\nconf_dir = \"/x\"\nwrite_default_conflist = true\n",
        )
        .unwrap();
        assert_eq!(c.address, PathBuf::from("/tmp/c.sock"));
        assert_eq!(c.berthd_timeout, Duration::from_secs(5));
        assert_eq!(c.cni.conf_dir, PathBuf::from("/x"));
        assert!(c.cni.write_default_conflist);
        assert_eq!(c.cni.del_attempts, 3);
    }

    #[test]
    fn typos_and_zero_timeouts_are_errors() {
        let e = Config::parse("[cri]\nadress = \"/x\"\n").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = Config::parse("[cri.cni]\nplugin_timeout = 0\n").unwrap_err();
        assert!(e.contains("at least 1 second"), "{e}");
    }
}
