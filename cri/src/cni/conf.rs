//! CNI network configurations: finding the pod network in the configuration directory
//! (kubelet's and containerd's rule: the first `.conflist`, `.conf` or `.json` file by name),
//! and the default bridge network berth-cri writes when asked to.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::config::CniConfig;

/// A network configuration list (a single-plugin `.conf` is read as a list of one).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    /// The file it came from.
    pub path: PathBuf,
    /// The network's name (`name`).
    pub name: String,
    /// `cniVersion`.
    pub cni_version: String,
    /// The plugin configurations, in order.
    pub plugins: Vec<Value>,
}

impl NetworkList {
    /// The plugin types, in order (`bridge`, `portmap`, …).
    pub fn types(&self) -> Vec<String> {
        self.plugins
            .iter()
            .map(|p| p["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Parses the text of `path` (a list, or one plugin's configuration).
pub fn parse(path: &Path, text: &str) -> Result<NetworkList, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let name = v["name"].as_str().unwrap_or_default().to_owned();
    if name.is_empty() {
        return Err("no network \"name\"".into());
    }
    let cni_version = v["cniVersion"].as_str().unwrap_or("0.4.0").to_owned();
    let plugins = match v.get("plugins") {
        Some(Value::Array(p)) => p.clone(),
        Some(_) => return Err("\"plugins\" is not a list".into()),
        None if v.get("type").is_some() => vec![v.clone()],
        None => return Err("neither \"plugins\" nor \"type\"".into()),
    };
    if plugins.is_empty() {
        return Err("\"plugins\" is empty".into());
    }
    if let Some(i) = plugins.iter().position(|p| !p["type"].is_string()) {
        return Err(format!("plugin {i} has no \"type\""));
    }
    Ok(NetworkList {
        path: path.to_owned(),
        name,
        cni_version,
        plugins,
    })
}

/// The pod network: the first valid configuration in `dir` by file name. `Err` says why
/// there is none (the reason NetworkReady reports).
pub fn load(dir: &Path) -> Result<NetworkList, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "cannot read the CNI configuration directory {}: {e}",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"))
        })
        .collect();
    files.sort();
    let mut problems = Vec::new();
    for f in &files {
        match std::fs::read_to_string(f)
            .map_err(|e| e.to_string())
            .and_then(|t| parse(f, &t))
        {
            Ok(n) => return Ok(n),
            Err(e) => problems.push(format!("{}: {e}", f.display())),
        }
    }
    if problems.is_empty() {
        Err(format!("no network config found in {}", dir.display()))
    } else {
        Err(format!(
            "no usable network config in {}: {}",
            dir.display(),
            problems.join("; ")
        ))
    }
}

/// The default pod network: a bridge with host-local IPAM, masquerading, a default route,
/// and portmap for host ports (containerd's default `10-containerd-net.conflist`, shape for
/// shape).
pub fn default_conflist(cfg: &CniConfig) -> Value {
    let mut ipam = json!({
        "type": "host-local",
        "ranges": [[{"subnet": cfg.default_subnet}]],
        "routes": [{"dst": "0.0.0.0/0"}],
    });
    if !cfg.default_lease_dir.as_os_str().is_empty() {
        ipam["dataDir"] = json!(cfg.default_lease_dir);
    }
    json!({
        "cniVersion": "1.0.0",
        "name": "berth",
        "plugins": [
            {
                "type": "bridge",
                "bridge": cfg.default_bridge,
                "isGateway": true,
                "ipMasq": true,
                "promiscMode": true,
                "ipam": ipam,
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    })
}

/// Writes [`default_conflist`] into the configuration directory when it is enabled and the
/// directory holds no configuration yet; returns the path written, if any.
pub fn ensure_default(cfg: &CniConfig) -> std::io::Result<Option<PathBuf>> {
    if !cfg.write_default_conflist || load(&cfg.conf_dir).is_ok() {
        return Ok(None);
    }
    std::fs::create_dir_all(&cfg.conf_dir)?;
    let path = cfg.conf_dir.join(cfg.default_conflist_name());
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(&default_conflist(cfg)).expect("JSON of plain values");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_valid_file_by_name_is_the_pod_network() {
        let d = tempfile::tempdir().unwrap();
        assert!(load(d.path())
            .unwrap_err()
            .contains("no network config found"));
        std::fs::write(d.path().join("README"), "not a config").unwrap();
        std::fs::write(d.path().join("05-bad.conflist"), "{").unwrap();
        std::fs::write(
            d.path().join("20-one.conf"),
            r#"{"cniVersion":"0.4.0","name":"one","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("10-list.conflist"),
            r#"{"cniVersion":"1.0.0","name":"list","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        let n = load(d.path()).unwrap();
        assert_eq!(n.name, "list");
        assert_eq!(n.types(), ["bridge", "portmap"]);
        std::fs::remove_file(d.path().join("10-list.conflist")).unwrap();
        let n = load(d.path()).unwrap();
        assert_eq!((n.name.as_str(), n.cni_version.as_str()), ("one", "0.4.0"));
        assert_eq!(n.types(), ["bridge"]);
    }

    #[test]
    fn the_default_network_is_written_only_when_asked_and_missing() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = CniConfig {
            conf_dir: d.path().join("net.d"),
            ..Default::default()
        };
        assert_eq!(ensure_default(&cfg).unwrap(), None);
        cfg.write_default_conflist = true;
        cfg.default_lease_dir = d.path().join("leases");
        let p = ensure_default(&cfg).unwrap().unwrap();
        let n = load(&cfg.conf_dir).unwrap();
        assert_eq!(n.path, p);
        assert_eq!(n.types(), ["bridge", "portmap"]);
        assert_eq!(
            n.plugins[0]["ipam"]["dataDir"],
            json!(d.path().join("leases"))
        );
        assert_eq!(ensure_default(&cfg).unwrap(), None);
    }
}
