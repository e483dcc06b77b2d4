//! Pod networking through real CNI plugins (Debian's `containernetworking-plugins`: bridge,
//! host-local, loopback, portmap), the way containerd's CRI drives them through libcni:
//!
//! - ADD: the loopback plugin brings `lo` up in the pod's network namespace, then each
//!   plugin of the pod network's list runs in order with the previous one's result as
//!   `prevResult`, on interface `eth0`; the last result holds the pod's IPs;
//! - DEL: the list in reverse order, then loopback; DEL tolerates a namespace that is gone
//!   (the plugins release IP leases and iptables rules by container ID), so StopPodSandbox
//!   may repeat it. The caller retries a failed DEL.
//!
//! The network configuration is read again at every ADD/DEL and Status, so installing a
//! network add-on's conflist needs no restart.

pub mod conf;
mod exec;

use std::net::IpAddr;
use std::path::Path;

use serde_json::{json, Value};

use crate::config::CniConfig;
use crate::error::{Error, Result};
pub use conf::NetworkList;
use exec::{find_plugin, invoke, Invocation};

/// The pod being attached or detached.
#[derive(Debug, Clone)]
pub struct PodNetwork<'a> {
    /// The sandbox ID (`CNI_CONTAINERID`).
    pub id: &'a str,
    /// The pinned network namespace (`CNI_NETNS`).
    pub netns: &'a Path,
    /// Pod name, namespace and UID (kubelet's `K8S_POD_*` CNI_ARGS).
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    /// Port mappings with a host port: (container port, host port, protocol, host IP).
    pub port_mappings: Vec<(i32, i32, &'static str, String)>,
}

/// What an ADD gave the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The pod's IPs, IPv4 first.
    pub ips: Vec<IpAddr>,
    /// The final result, for `prevResult` on DEL.
    pub result: Value,
}

/// The CNI side of berth-cri.
pub struct Cni {
    cfg: CniConfig,
}

impl Cni {
    /// CNI with these settings.
    pub fn new(cfg: CniConfig) -> Self {
        Self { cfg }
    }

    /// The pod network, if it is usable: a configuration exists and its plugins (and
    /// loopback) are installed. `Err` is the reason for `NetworkReady=false`.
    pub fn network(&self) -> Result<NetworkList, String> {
        let net = conf::load(&self.cfg.conf_dir)?;
        for kind in net.types().iter().map(String::as_str).chain(["loopback"]) {
            if find_plugin(&self.cfg.bin_dirs, kind).is_none() {
                return Err(format!(
                    "CNI plugin {kind:?} of network {:?} ({}) is not installed in {:?}",
                    net.name,
                    net.path.display(),
                    self.cfg.bin_dirs
                ));
            }
        }
        Ok(net)
    }

    fn invocation<'a>(
        &'a self,
        command: &'static str,
        pod: &'a PodNetwork<'a>,
        ifname: &'a str,
        args: &'a str,
    ) -> Invocation<'a> {
        Invocation {
            command,
            container_id: pod.id,
            netns: pod.netns,
            ifname,
            args,
            bin_dirs: &self.cfg.bin_dirs,
            timeout: self.cfg.plugin_timeout,
        }
    }

    /// ADD of the pod to loopback and the pod network.
    pub async fn add(&self, pod: &PodNetwork<'_>) -> Result<Attachment> {
        let net = self.network().map_err(Error::FailedPrecondition)?;
        let args = cni_args(pod);
        let lo = loopback_conf(&net.cni_version);
        invoke("loopback", &lo, &self.invocation("ADD", pod, "lo", &args))
            .await
            .map_err(|message| cni_error("ADD", "cni-loopback", "loopback", message))?;
        let inv = self.invocation("ADD", pod, "eth0", &args);
        let mut prev: Option<Value> = None;
        for plugin in &net.plugins {
            let kind = plugin["type"].as_str().unwrap_or_default();
            let c = plugin_conf(&net, plugin, prev.as_ref(), pod);
            let out = invoke(kind, &c, &inv)
                .await
                .map_err(|message| cni_error("ADD", &net.name, kind, message))?;
            if !out.is_null() {
                prev = Some(out);
            }
        }
        let result = prev.unwrap_or(Value::Null);
        Ok(Attachment {
            network: net.name,
            ips: ips_of(&result),
            result,
        })
    }

    /// DEL of the pod from the pod network (reverse order) and loopback; every plugin runs
    /// even when one fails, and the first failure is returned.
    pub async fn del(&self, pod: &PodNetwork<'_>, prev: Option<&Value>) -> Result<()> {
        let net = self.network().map_err(Error::FailedPrecondition)?;
        let args = cni_args(pod);
        let inv = self.invocation("DEL", pod, "eth0", &args);
        let mut first: Option<Error> = None;
        for plugin in net.plugins.iter().rev() {
            let kind = plugin["type"].as_str().unwrap_or_default();
            let c = plugin_conf(&net, plugin, prev, pod);
            if let Err(message) = invoke(kind, &c, &inv).await {
                first.get_or_insert(cni_error("DEL", &net.name, kind, message));
            }
        }
        let lo = loopback_conf(&net.cni_version);
        if let Err(message) =
            invoke("loopback", &lo, &self.invocation("DEL", pod, "lo", &args)).await
        {
            first.get_or_insert(cni_error("DEL", "cni-loopback", "loopback", message));
        }
        first.map_or(Ok(()), Err)
    }
}

fn cni_error(command: &'static str, network: &str, plugin: &str, message: String) -> Error {
    Error::Cni {
        command,
        network: network.to_owned(),
        plugin: plugin.to_owned(),
        message,
    }
}

/// kubelet's CNI_ARGS.
fn cni_args(pod: &PodNetwork<'_>) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        pod.namespace, pod.name, pod.id, pod.uid
    )
}

fn loopback_conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": "cni-loopback", "type": "loopback"})
}

/// One plugin's stdin: its configuration with the list's name and version, the previous
/// result, and the runtime configuration of the capabilities it declares (libcni's
/// `buildOneConfig` + `injectRuntimeConfig`).
fn plugin_conf(
    net: &NetworkList,
    plugin: &Value,
    prev: Option<&Value>,
    pod: &PodNetwork<'_>,
) -> Value {
    let mut c = plugin.clone();
    c["name"] = json!(net.name);
    c["cniVersion"] = json!(net.cni_version);
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    if plugin["capabilities"]["portMappings"] == json!(true) {
        let maps: Vec<Value> = pod
            .port_mappings
            .iter()
            .map(|(container, host, proto, host_ip)| {
                json!({"hostPort": host, "containerPort": container, "protocol": proto, "hostIP": host_ip})
            })
            .collect();
        c["runtimeConfig"] = json!({"portMappings": maps});
    }
    if let Some(o) = c.as_object_mut() {
        o.remove("capabilities");
    }
    c
}

/// The IPs of a result (CNI ≥ 0.3 `ips`, or 0.2's `ip4`/`ip6`), IPv4 first.
pub fn ips_of(result: &Value) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut push = |cidr: &str| {
        if let Ok(ip) = cidr.split('/').next().unwrap_or_default().parse::<IpAddr>() {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    };
    if let Some(list) = result["ips"].as_array() {
        for ip in list {
            push(ip["address"].as_str().unwrap_or_default());
        }
    }
    for key in ["ip4", "ip6"] {
        push(result[key]["ip"].as_str().unwrap_or_default());
    }
    out.sort_by_key(|ip| ip.is_ipv6());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_come_ipv4_first_from_either_result_version() {
        let r = json!({"ips": [{"address": "fd00::5/64"}, {"address": "10.88.0.5/16", "gateway": "10.88.0.1"}]});
        assert_eq!(
            ips_of(&r),
            vec![
                "10.88.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        let r = json!({"ip4": {"ip": "10.1.0.2/24"}});
        assert_eq!(ips_of(&r), vec!["10.1.0.2".parse::<IpAddr>().unwrap()]);
        assert!(ips_of(&Value::Null).is_empty());
    }

    #[test]
    fn capabilities_become_runtime_config() {
        let net = NetworkList {
            path: "/x".into(),
            name: "berth".into(),
            cni_version: "1.0.0".into(),
            plugins: vec![],
        };
        let pod = PodNetwork {
            id: "s1",
            netns: Path::new("/run/netns/s1"),
            name: "p",
            namespace: "ns",
            uid: "u",
            port_mappings: vec![(80, 8080, "tcp", String::new())],
        };
        let plugin = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let c = plugin_conf(&net, &plugin, Some(&json!({"ips": []})), &pod);
        assert_eq!(c["name"], "berth");
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(c.get("capabilities").is_none());
        assert_eq!(c["prevResult"], json!({"ips": []}));
        assert_eq!(
            cni_args(&pod),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=s1;K8S_POD_UID=u"
        );
    }
}
