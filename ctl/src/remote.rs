//! Where berthctl's calls go: the local sockets (`--address`, `--init-address`), or one
//! node's remote API (`--remote`, a context), or several nodes (`--nodes`, [`crate::fanout`]).
//!
//! A node is written `[NAME=]HOST[:PORT]` (port 7443 by default): NAME is the name the node's
//! certificate must carry (a DNS name or IP address in its SANs), HOST where to connect. Without
//! NAME the host is the name, as for any TLS client. So a test reaching `node-a` through a
//! forwarded port writes `node-a=127.0.0.1:17443`, and a context pins each node's identity.
//!
//! The choice, first match wins: `--nodes` → fan-out; `--remote` → that node; `--context` → its
//! first node; an explicit `--address`/`--init-address` (flag or environment) → local; the
//! contexts file's current context → its first node; else local. Credentials: `--ca`,
//! `--cert`, `--key`, each falling back to the context's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_remote::client::{with_default_port, Refusal};
use berth_remote::tls::Credentials;

use crate::contexts::{self, resolve_credential, Credential};
use crate::error::Error;
use crate::globals::Globals;

/// One node: the name its certificate must carry and where to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Checked against the node's certificate.
    pub name: String,
    /// `host:port`.
    pub address: String,
}

impl NodeSpec {
    /// Parses `[NAME=]HOST[:PORT]`.
    pub fn parse(text: &str) -> Result<NodeSpec, Error> {
        let (name, addr) = match text.split_once('=') {
            Some((n, a)) => (Some(n.trim()), a.trim()),
            None => (None, text.trim()),
        };
        if addr.is_empty() || name == Some("") {
            return Err(Error::Usage(format!(
                "node {text:?}: expected [NAME=]HOST[:PORT]"
            )));
        }
        let host = if let Some(rest) = addr.strip_prefix('[') {
            rest.split(']').next().unwrap_or(rest)
        } else if addr.matches(':').count() == 1 {
            addr.split(':').next().unwrap_or(addr)
        } else {
            addr
        };
        Ok(NodeSpec {
            name: name.unwrap_or(host).to_string(),
            address: with_default_port(addr),
        })
    }

    /// `NAME=HOST:PORT`, what `--remote` takes.
    pub fn spec(&self) -> String {
        format!("{}={}", self.name, self.address)
    }
}

/// A node reached over the remote API.
pub struct Remote {
    /// Which node.
    pub node: NodeSpec,
    creds: Credentials,
    refusals: Mutex<Vec<Refusal>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Remote")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// How errors name the node: `node-a (127.0.0.1:17443)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.node.name, self.node.address)
    }

    /// A ttrpc connection to the node (both berthd's services and init's go through it).
    pub async fn connect(&self, timeout: Duration) -> Result<ttrpc::r#async::Client, Error> {
        let (client, refusal) = berth_remote::client::connect_watched(
            &self.node.address,
            &self.node.name,
            &self.creds,
            timeout,
        )
        .await?;
        if let Ok(mut r) = self.refusals.lock() {
            r.push(refusal);
        }
        Ok(client)
    }

    /// When the node refused the client's certificate on one of the connections: what it said.
    pub fn refusal(&self) -> Option<String> {
        let r = self.refusals.lock().ok()?;
        r.iter()
            .find_map(Refusal::describe)
            .map(|d| format!("{}: {d}", self.label()))
    }
}

/// What the global flags point at.
#[derive(Debug)]
pub enum Target {
    /// The local sockets.
    Local,
    /// One node.
    Remote(Arc<Remote>),
    /// Several nodes, each run on its own ([`crate::fanout`]).
    FanOut(Vec<NodeSpec>),
}

/// The contexts file and the context in play, if any.
struct InPlay {
    path: PathBuf,
    context: Option<contexts::Context>,
}

fn in_play(g: &Globals, address_explicit: bool) -> Result<InPlay, Error> {
    let Some(path) = contexts::path() else {
        return match &g.context {
            Some(_) => Err(Error::Usage(
                "--context: no contexts file (set BERTHCONFIG or HOME)".into(),
            )),
            None => Ok(InPlay {
                path: PathBuf::new(),
                context: None,
            }),
        };
    };
    let file = contexts::File::load(&path)?;
    let name = match (&g.context, address_explicit) {
        (Some(n), _) => Some(n.clone()),
        (None, false) => file.context.clone(),
        (None, true) if g.remote.is_some() || !g.nodes.is_empty() => file.context.clone(),
        (None, true) => None,
    };
    let context = match name {
        Some(n) => Some(file.get(&n, &path)?.clone()),
        None => None,
    };
    Ok(InPlay { path, context })
}

fn credentials(g: &Globals, play: &InPlay) -> Result<Credentials, Error> {
    let base = play.path.parent().unwrap_or(Path::new("."));
    let pick = |flag: &Option<PathBuf>, ctx: Option<&String>, what: &str| match (flag, ctx) {
        (Some(p), _) => Ok(Credential::File(p.clone())),
        (None, Some(v)) => Ok(resolve_credential(v, base)),
        (None, None) => Err(Error::Usage(format!(
            "the remote API needs --ca, --cert and --key (or a context with them; \
                 docs/remote-api.md): no {what}"
        ))),
    };
    let c = play.context.as_ref();
    let ca = pick(&g.ca, c.map(|c| &c.ca), "CA certificate")?.read("CA certificate")?;
    let cert = pick(&g.cert, c.map(|c| &c.cert), "certificate")?.read("certificate")?;
    let key = pick(&g.key, c.map(|c| &c.key), "key")?.read("key")?;
    Credentials::from_pem(&ca, &cert, &key)
        .map_err(|e| Error::Usage(format!("credentials: {}", berth_api::errdefs::chain(&e))))
}

/// A node named in `--nodes` or `--remote`: a node of the context by its name, else a spec.
fn node(text: &str, play: &InPlay) -> Result<NodeSpec, Error> {
    if let Some(ctx) = &play.context {
        for n in &ctx.nodes {
            let spec = NodeSpec::parse(n)?;
            if spec.name == text {
                return Ok(spec);
            }
        }
    }
    NodeSpec::parse(text)
}

/// Resolves the global flags; `address_explicit`: `--address` or `--init-address` was given.
pub fn resolve(g: &Globals, address_explicit: bool) -> Result<Target, Error> {
    let wants_remote = g.remote.is_some() || g.context.is_some() || !g.nodes.is_empty();
    let play = in_play(g, address_explicit)?;
    if !wants_remote && (address_explicit || play.context.is_none()) {
        return Ok(Target::Local);
    }
    if !g.nodes.is_empty() {
        let mut specs = Vec::new();
        for n in &g.nodes {
            if n == "*" {
                let ctx = play.context.as_ref().ok_or_else(|| {
                    Error::Usage("--nodes '*' needs a context (--context)".into())
                })?;
                for c in &ctx.nodes {
                    specs.push(NodeSpec::parse(c)?);
                }
            } else {
                specs.push(node(n, &play)?);
            }
        }
        return Ok(Target::FanOut(specs));
    }
    let spec = match &g.remote {
        Some(r) => node(r, &play)?,
        None => {
            let ctx = play.context.as_ref().expect("a context is in play here");
            let first = ctx.nodes.first().ok_or_else(|| {
                Error::Usage(format!(
                    "the context has no nodes ({})",
                    play.path.display()
                ))
            })?;
            NodeSpec::parse(first)?
        }
    };
    Ok(Target::Remote(Arc::new(Remote {
        node: spec,
        creds: credentials(g, &play)?,
        refusals: Mutex::default(),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_specs_name_the_certificate_and_the_address() {
        let n = NodeSpec::parse("node-a=127.0.0.1:17443").unwrap();
        assert_eq!(
            (n.name.as_str(), n.address.as_str()),
            ("node-a", "127.0.0.1:17443")
        );
        let n = NodeSpec::parse("10.0.0.7").unwrap();
        assert_eq!(
            (n.name.as_str(), n.address.as_str()),
            ("10.0.0.7", "10.0.0.7:7443")
        );
        let n = NodeSpec::parse("edge-7.lab:9443").unwrap();
        assert_eq!(n.name, "edge-7.lab");
        let n = NodeSpec::parse("[fd00::7]:9443").unwrap();
        assert_eq!(
            (n.name.as_str(), n.address.as_str()),
            ("fd00::7", "[fd00::7]:9443")
        );
        assert_eq!(
            NodeSpec::parse("fd00::7").unwrap().address,
            "[fd00::7]:7443"
        );
        assert!(NodeSpec::parse("=10.0.0.1").is_err());
        assert!(NodeSpec::parse("a=").is_err());
        assert_eq!(
            NodeSpec::parse("node-a=127.0.0.1:1").unwrap().spec(),
            "node-a=127.0.0.1:1"
        );
    }
}
