//! Version, Status and RuntimeConfig: what kubelet asks before anything else.
//!
//! `RuntimeReady` is berthd answering its Version call; `NetworkReady` is a usable CNI
//! network configuration (kubelet keeps non-hostNetwork pods off a node until it is true),
//! with the reason when it is not. The cgroup driver is cgroupfs.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;

use crate::berthd::Berthd;
use crate::cni::Cni;
use crate::config::Config;
use crate::proto::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeCondition, RuntimeConfigResponse,
    RuntimeStatus, StatusResponse, VersionResponse,
};

/// The CRI version berth-cri speaks.
pub const CRI_VERSION: &str = "v1";
/// The runtime's name in `crictl version`.
pub const RUNTIME_NAME: &str = "berth";

/// Reason of `RuntimeReady=false`.
pub const REASON_BERTHD_DOWN: &str = "BerthdUnreachable";
/// Reason of `NetworkReady=false` (kubelet's and containerd's wording).
pub const REASON_NETWORK: &str = "NetworkPluginNotReady";

/// Answers the runtime-level questions.
pub struct RuntimeInfo {
    berthd: Arc<Berthd>,
    cni: Arc<Cni>,
    config: Config,
}

impl RuntimeInfo {
    /// Over these peers, describing `config` in verbose Status.
    pub fn new(berthd: Arc<Berthd>, cni: Arc<Cni>, config: Config) -> Self {
        Self {
            berthd,
            cni,
            config,
        }
    }

    /// `Version`: berthd's version as the runtime's (berth-cri's own when berthd is down).
    pub async fn version(&self) -> VersionResponse {
        let runtime_version = match self.berthd.version().await {
            Ok((v, _)) => v,
            Err(_) => env!("CARGO_PKG_VERSION").to_owned(),
        };
        VersionResponse {
            version: "0.1.0".to_owned(),
            runtime_name: RUNTIME_NAME.to_owned(),
            runtime_version,
            runtime_api_version: CRI_VERSION.to_owned(),
        }
    }

    /// `Status`.
    pub async fn status(&self, verbose: bool) -> StatusResponse {
        let runtime = match self.berthd.version().await {
            Ok(_) => RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                ..Default::default()
            },
            Err(e) => RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: false,
                reason: REASON_BERTHD_DOWN.into(),
                message: berth_api::errdefs::chain(&e),
            },
        };
        let network = self.cni.network();
        let network_cond = match &network {
            Ok(_) => RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                ..Default::default()
            },
            Err(reason) => RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: REASON_NETWORK.into(),
                message: format!("Network plugin returns error: {reason}"),
            },
        };
        let mut info = HashMap::new();
        if verbose {
            let c = &self.config;
            info.insert(
                "config".to_owned(),
                json!({
                    "address": c.address,
                    "berthdAddress": c.berthd_address,
                    "namespace": c.namespace,
                    "sandboxImage": c.sandbox_image,
                    "netnsDir": c.netns_dir,
                    "snapshotter": c.snapshotter,
                    "cgroupDriver": "cgroupfs",
                    "cni": {
                        "binDirs": c.cni.bin_dirs,
                        "confDir": c.cni.conf_dir,
                        "writeDefaultConflist": c.cni.write_default_conflist,
                    },
                })
                .to_string(),
            );
            let (cniconfig, load_status) = match &network {
                Ok(n) => (
                    json!({"name": n.name, "cniVersion": n.cni_version, "file": n.path, "plugins": n.plugins}),
                    "OK".to_owned(),
                ),
                Err(reason) => (serde_json::Value::Null, reason.clone()),
            };
            info.insert("cniconfig".to_owned(), cniconfig.to_string());
            info.insert("lastCNILoadStatus".to_owned(), load_status);
        }
        StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![runtime, network_cond],
            }),
            info,
            ..Default::default()
        }
    }

    /// `RuntimeConfig`: the cgroupfs driver.
    pub fn runtime_config(&self) -> RuntimeConfigResponse {
        RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: CgroupDriver::Cgroupfs as i32,
            }),
        }
    }
}
