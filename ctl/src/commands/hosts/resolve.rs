//! `berthctl hosts resolve REF`: the ordered endpoints a pull of REF would try — URL,
//! capabilities, `ns`, TLS, dial timeout, credentials, source file — asked of berthd
//! (Registry service, `ResolveHosts`) so that its live settings answer.

use berth_api::proto::registry as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{print_json, table, Format};

/// `hosts resolve` arguments.
#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    /// Image reference (`alpine`, `10.0.2.2:5000/app:1`, `ghcr.io/o/r@sha256:…`).
    reference: String,
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// Resolves and prints the endpoints.
pub async fn run(g: &Globals, a: ResolveArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::ResolveHostsRequest {
        reference: a.reference,
        ..Default::default()
    };
    let r = berthd
        .bounded(
            "ResolveHosts",
            berthd.registry().resolve_hosts(berthd.plain_ctx(), &req),
        )
        .await?;
    match a.format {
        Format::Json => print_json(&resolve_json(&r)),
        Format::Table => print!("{}", resolve_table(&r)),
    }
    Ok(())
}

/// JSON `null` for an empty string.
fn or_null(s: &str) -> serde_json::Value {
    if s.is_empty() {
        serde_json::Value::Null
    } else {
        s.into()
    }
}

fn endpoint_json(e: &pb::Endpoint) -> serde_json::Value {
    serde_json::json!({
        "url": e.url,
        "scheme": e.scheme,
        "host": e.host,
        "path": e.path,
        "capabilities": e.capabilities,
        "ns": or_null(&e.namespace),
        "tls": {
            "ca": e.ca_files,
            "client": e.client_certs.iter().map(|c| serde_json::json!({
                "cert": c.cert,
                "key": or_null(&c.key),
            })).collect::<Vec<_>>(),
            "skip_verify": e.skip_verify,
        },
        "headers": e.headers.iter().map(|h| (h.name.clone(), serde_json::json!(h.values))).collect::<serde_json::Map<_, _>>(),
        "override_path": e.override_path,
        "dial_timeout_ms": if e.dial_timeout_ms == 0 { serde_json::Value::Null } else { e.dial_timeout_ms.into() },
        "source": or_null(&e.source),
        "credentials": e.has_credentials,
    })
}

/// The JSON form of a ResolveHosts answer (stable keys for scripts).
fn resolve_json(r: &pb::ResolveHostsResponse) -> serde_json::Value {
    serde_json::json!({
        "registry": r.registry,
        "repository": r.repository,
        "object": r.object,
        "config_path": or_null(&r.config_path),
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
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let rows: Vec<Vec<String>> = r
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            vec![
                (i + 1).to_string(),
                e.url.clone(),
                e.capabilities.join(","),
                or_dash(&e.namespace),
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
