//! Shared by the registry pull tests and the pull benchmark: a real `docker-registry` on
//! loopback (its own config, port and storage), pushes with skopeo, explicit endpoint lists,
//! and berthd's storage and snapshotters opened in-process.
#![allow(dead_code)]

/// The registry process and skopeo pushes, shared with the QEMU scenarios.
pub use berth_test_support::registry::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use berth_engine::remotes::client::ClientOptions;
use berth_engine::remotes::pull::PullOptions;
use berth_engine::remotes::{Capabilities, RegistryHost, Scheme, TlsSettings};
use berth_engine::snapshots::Snapshotters;
use berth_engine::store::Store;

pub fn endpoint(scheme: Scheme, addr: &str) -> RegistryHost {
    RegistryHost {
        scheme,
        host: addr.to_string(),
        path: "/v2".into(),
        capabilities: Capabilities::PULL_RESOLVE,
        tls: TlsSettings::default(),
        headers: Vec::new(),
        override_path: false,
        namespace: None,
        dial_timeout: Some(Duration::from_secs(2)),
        source: None,
    }
}

/// berthd's storage and snapshotters opened in-process on `root`.
pub struct Engine {
    pub storage: Arc<Store>,
    pub snapshotters: Arc<Snapshotters>,
}

pub fn engine(root: &Path) -> Result<Engine> {
    std::fs::create_dir_all(root)?;
    let mut registry = berth_engine::plugins::Registry::default();
    let snapshotters = Arc::new(berth_engine::snapshots::set::load(root, &mut registry));
    let storage = Arc::new(Store::open_with(
        root,
        &BTreeMap::new(),
        snapshotters.clone(),
    )?);
    Ok(Engine {
        storage,
        snapshotters,
    })
}

pub fn opts(stall: Duration) -> PullOptions {
    PullOptions {
        client: ClientOptions {
            stall_timeout: stall,
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
