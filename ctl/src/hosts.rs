//! `berthctl hosts resolve REF` and `berthctl config reload`: what berthd would do for a pull
//! (asked of berthd, so its live settings answer), and reloading its configuration.

use std::time::Duration;

use clap::Subcommand;

use berth_api::proto::{config as cpb, config_ttrpc, registry as pb, registry_ttrpc};
use berth_api::client::{bounded, normalize_address, ClientError};
use crate::{table, Format};

/// `berthctl hosts` verbs.
#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// The ordered endpoints a pull of REF would use: URL, capabilities, ns, TLS, source file.
    Resolve {
        /// Image reference (`alpine`, `10.0.2.2:5000/app:1`, `ghcr.io/o/r@sha256:…`).
        reference: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

/// `berthctl config` verbs.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Reload berthd's configuration (like SIGHUP) and print what changed.
    Reload {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

async fn connect(address: &str, timeout: Duration) -> Result<ttrpc::r#async::Client, ClientError> {
    let address = normalize_address(address);
    match tokio::time::timeout(timeout, ttrpc::r#async::Client::connect(&address)).await {
        Ok(r) => r.map_err(|source| ClientError::Connect { address, source }),
        Err(_) => Err(ClientError::Timeout {
            address,
            method: "connect",
            timeout,
        }),
    }
}

fn ctx(timeout: Duration) -> ttrpc::context::Context {
    ttrpc::context::with_timeout(timeout.as_nanos().min(i64::MAX as u128) as i64)
}

/// Runs a `hosts` verb against berthd at `address`.
pub async fn run_hosts(
    address: &str,
    timeout: Duration,
    cmd: HostsCommand,
) -> Result<(), ClientError> {
    let HostsCommand::Resolve { reference, format } = cmd;
    let c = registry_ttrpc::RegistryClient::new(connect(address, timeout).await?);
    let req = pb::ResolveHostsRequest {
        reference,
        ..Default::default()
    };
    let r = bounded(
        &normalize_address(address),
        timeout,
        "ResolveHosts",
        c.resolve_hosts(ctx(timeout), &req),
    )
    .await?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&resolve_json(&r)).expect("json of plain values")
        ),
        Format::Table => print!("{}", resolve_table(&r)),
    }
    Ok(())
}

fn endpoint_json(e: &pb::Endpoint) -> serde_json::Value {
    serde_json::json!({
        "url": e.url,
        "scheme": e.scheme,
        "host": e.host,
        "path": e.path,
        "capabilities": e.capabilities,
        "ns": if e.namespace.is_empty() { serde_json::Value::Null } else { e.namespace.clone().into() },
        "tls": {
            "ca": e.ca_files,
            "client": e.client_certs.iter().map(|c| serde_json::json!({
                "cert": c.cert,
                "key": if c.key.is_empty() { serde_json::Value::Null } else { c.key.clone().into() },
            })).collect::<Vec<_>>(),
            "skip_verify": e.skip_verify,
        },
        "headers": e.headers.iter().map(|h| (h.name.clone(), serde_json::json!(h.values))).collect::<serde_json::Map<_, _>>(),
        "override_path": e.override_path,
        "dial_timeout_ms": if e.dial_timeout_ms == 0 { serde_json::Value::Null } else { e.dial_timeout_ms.into() },
        "source": if e.source.is_empty() { serde_json::Value::Null } else { e.source.clone().into() },
        "credentials": e.has_credentials,
    })
}

/// The JSON form of a ResolveHosts answer (stable keys for scripts).
pub fn resolve_json(r: &pb::ResolveHostsResponse) -> serde_json::Value {
    serde_json::json!({
        "registry": r.registry,
        "repository": r.repository,
        "object": r.object,
        "config_path": if r.config_path.is_empty() { serde_json::Value::Null } else { r.config_path.clone().into() },
        "warnings": r.warnings,
        "endpoints": r.endpoints.iter().map(endpoint_json).collect::<Vec<_>>(),
    })
}

fn tls_cell(e: &pb::Endpoint) -> String {
    if e.scheme == "http" {
        return "-".into();
    }
    let mut parts = Vec::new();
    if e.skip_verify {
        parts.push("skip_verify".to_string());
    }
    for c in &e.ca_files {
        parts.push(format!("ca={c}"));
    }
    for c in &e.client_certs {
        if c.key.is_empty() {
            parts.push(format!("client={}", c.cert));
        } else {
            parts.push(format!("client={},{}", c.cert, c.key));
        }
    }
    if parts.is_empty() {
        "system CAs".into()
    } else {
        parts.join(" ")
    }
}

fn resolve_table(r: &pb::ResolveHostsResponse) -> String {
    let mut out = format!(
        "registry {}  repository {}  object {}  config_path {}\n",
        r.registry,
        r.repository,
        r.object,
        if r.config_path.is_empty() {
            "(none)"
        } else {
            &r.config_path
        }
    );
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    let rows: Vec<Vec<String>> = r
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            vec![
                (i + 1).to_string(),
                e.url.clone(),
                e.capabilities.join(","),
                if e.namespace.is_empty() {
                    "-".into()
                } else {
                    e.namespace.clone()
                },
                tls_cell(e),
                if e.dial_timeout_ms == 0 {
                    "-".into()
                } else {
                    format!("{}ms", e.dial_timeout_ms)
                },
                if e.has_credentials { "yes" } else { "no" }.into(),
                if e.source.is_empty() {
                    "(default)".into()
                } else {
                    e.source.clone()
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "#",
            "URL",
            "CAPABILITIES",
            "NS",
            "TLS",
            "DIAL",
            "AUTH",
            "SOURCE",
        ],
        &rows,
    ));
    out
}

/// Runs a `config` verb against berthd at `address`.
pub async fn run_config(
    address: &str,
    timeout: Duration,
    cmd: ConfigCommand,
) -> Result<(), ClientError> {
    let ConfigCommand::Reload { format } = cmd;
    let c = config_ttrpc::ConfigClient::new(connect(address, timeout).await?);
    let r = bounded(
        &normalize_address(address),
        timeout,
        "Reload",
        c.reload(ctx(timeout), &cpb::ReloadRequest::new()),
    )
    .await?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "applied": r.applied,
                "needs_restart": r.needs_restart,
                "warnings": r.warnings,
                "sources": r.sources,
            }))
            .expect("json of plain values")
        ),
        Format::Table => {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "(nothing)".to_string()
                } else {
                    v.join(", ")
                }
            };
            println!("reloaded from: {}", list(&r.sources));
            println!("applied:       {}", list(&r.applied));
            println!("needs restart: {}", list(&r.needs_restart));
            for w in &r.warnings {
                println!("warning: {w}");
            }
        }
    }
    Ok(())
}
