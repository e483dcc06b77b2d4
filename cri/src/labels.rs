//! The labels through which berth-cri keeps its state in berthd, in one place.
//!
//! berth-cri remembers nothing itself: a sandbox is a berthd container whose labels say it is
//! one and carry what ListPodSandbox filters on and what StopPodSandbox must undo (the
//! network namespace, the CNI result), and whose OCI spec carries the whole
//! `PodSandboxConfig` ([`SANDBOX_CONFIG_ANNOTATION`]). Restarting berth-cri (or berthd)
//! therefore loses nothing: the next call reads the same records.

/// What a berthd container is to the CRI: [`KIND_SANDBOX`] or [`KIND_CONTAINER`].
pub const KIND: &str = "io.berth.cri.kind";
/// [`KIND`] of a pod sandbox.
pub const KIND_SANDBOX: &str = "sandbox";
/// [`KIND`] of a CRI container.
pub const KIND_CONTAINER: &str = "container";
/// A container's reserved name, `<name>_<pod name>_<pod namespace>_<pod uid>_<attempt>`
/// (containerd's `makeContainerName`): one record per name.
pub const CONTAINER_NAME: &str = "io.berth.cri.container.name";
/// The sandbox a container belongs to.
pub const CONTAINER_SANDBOX: &str = "io.berth.cri.container.sandbox";
/// The image ID (config digest) a container was created from.
pub const CONTAINER_IMAGE_ID: &str = "io.berth.cri.container.image-id";
/// The container's CRI log file (the pod's log directory joined with its log path).
pub const CONTAINER_LOG_PATH: &str = "io.berth.cri.container.log-path";
/// Unix nanoseconds of the container's start (set once StartContainer succeeded).
pub const CONTAINER_STARTED_AT: &str = "io.berth.cri.container.started-at";
/// The OCI spec annotation holding the container's `ContainerConfig` (protobuf, base64).
pub const CONTAINER_CONFIG_ANNOTATION: &str = "io.berth.cri.container-config";
/// The sandbox's reserved name, `<name>_<namespace>_<uid>_<attempt>` (containerd's
/// `makeSandboxName`): one live record per name.
pub const SANDBOX_NAME: &str = "io.berth.cri.sandbox.name";
/// Path of the pinned network namespace (absent: host network).
pub const NETNS: &str = "io.berth.cri.sandbox.netns";
/// The pod's IPs from CNI, comma-separated, primary first (absent: none, or torn down).
pub const IPS: &str = "io.berth.cri.sandbox.ips";
/// The CNI network's name the sandbox was added to.
pub const NETWORK: &str = "io.berth.cri.sandbox.network";
/// The CNI ADD result (JSON) when it fits in a label: given back as `prevResult` on DEL.
pub const CNI_RESULT: &str = "io.berth.cri.sandbox.cni-result";
/// The cgroup parent kubelet asked for: the sandbox's and its containers' cgroups are made
/// under it (`<parent>/<id>`).
pub const CGROUP_PARENT: &str = "io.berth.cri.sandbox.cgroup-parent";
/// The sandbox image kubelet configured (recorded, never pulled).
pub const SANDBOX_IMAGE: &str = "io.berth.cri.sandbox.image";
/// The runtime handler the sandbox was created with.
pub const RUNTIME_HANDLER: &str = "io.berth.cri.sandbox.runtime-handler";
/// On image records berth-cri created (the repo-digest records of a pull), containerd's
/// `io.cri-containerd.image=managed` under berth's name.
pub const IMAGE_MANAGED: &str = "io.berth.cri.image";

/// The OCI spec annotation holding the sandbox's `PodSandboxConfig`, protobuf-encoded and
/// base64'd: too large for a label (annotations of a pod are unbounded), and the spec is
/// stored whole by berthd.
pub const SANDBOX_CONFIG_ANNOTATION: &str = "io.berth.cri.sandbox-config";

/// Largest label berthd accepts (key + value, containerd's rule).
pub const MAX_LABEL: usize = 4096;

/// The CRI config berth-cri stored, base64 protobuf, in a berthd container's OCI spec under
/// `annotation` (a container's or a sandbox's; `what` names it in errors).
pub fn stored_config<M: prost::Message + Default>(
    c: &berth_api::proto::containers::Container,
    what: &str,
    annotation: &str,
) -> crate::error::Result<M> {
    use base64::Engine as _;
    let corrupt = |part: &str, e: &dyn std::fmt::Display| {
        crate::error::Error::Corrupt(format!("{what} {}: {part}: {e}", c.id))
    };
    let spec: serde_json::Value =
        serde_json::from_slice(&c.spec).map_err(|e| corrupt("OCI spec", &e))?;
    let encoded = spec["annotations"][annotation].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| corrupt("config annotation", &e))?;
    M::decode(bytes.as_slice()).map_err(|e| corrupt("config annotation", &e))
}
