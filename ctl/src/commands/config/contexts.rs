//! `berthctl config contexts|use-context|add-context`: the contexts file ([`crate::contexts`]),
//! like `kubectl config get-contexts|use-context|set-context` and talosconfig.

use std::path::{Path, PathBuf};

use crate::contexts::{self, Context, File};
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{print_json, table, Format};
use crate::remote::NodeSpec;

/// `config contexts` arguments.
#[derive(Debug, clap::Args)]
pub struct ContextsArgs {
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// `config use-context` arguments.
#[derive(Debug, clap::Args)]
pub struct UseArgs {
    /// The context that applies when no --remote, --context or --address is given.
    name: String,
}

/// `config add-context` arguments (credentials: the global `--ca`, `--cert`, `--key`).
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The context's name.
    name: String,
    /// A node, `[NAME=]HOST[:PORT]` (repeat or comma-separate; the first is the default).
    #[arg(
        long = "node",
        id = "context_node",
        required = true,
        value_delimiter = ','
    )]
    nodes: Vec<String>,
    /// Make it the current context too.
    #[arg(long = "use")]
    use_it: bool,
}

fn file_path() -> Result<PathBuf, Error> {
    contexts::path().ok_or_else(|| Error::Usage("no contexts file: set BERTHCONFIG or HOME".into()))
}

/// Lists the contexts: CURRENT, NAME, NODES.
pub(super) fn list(a: ContextsArgs) -> Result<(), Error> {
    let path = file_path()?;
    let f = File::load(&path)?;
    let current = f.context.as_deref();
    if a.format == Format::Json {
        let v: Vec<_> = f
            .contexts
            .iter()
            .map(|(n, c)| serde_json::json!({"name": n, "current": Some(n.as_str()) == current, "nodes": c.nodes}))
            .collect();
        print_json(&serde_json::json!(v));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = f
        .contexts
        .iter()
        .map(|(n, c)| {
            vec![
                if Some(n.as_str()) == current { "*" } else { "" }.into(),
                n.clone(),
                c.nodes.join(","),
            ]
        })
        .collect();
    print!("{}", table(&["CURRENT", "NAME", "NODES"], &rows));
    Ok(())
}

/// Sets the current context.
pub(super) fn use_context(a: UseArgs) -> Result<(), Error> {
    let path = file_path()?;
    let mut f = File::load(&path)?;
    f.get(&a.name, &path)?;
    f.context = Some(a.name.clone());
    f.save(&path)?;
    println!("current context: {}", a.name);
    Ok(())
}

fn absolute(p: &Path) -> Result<String, Error> {
    std::fs::canonicalize(p)
        .map(|p| p.display().to_string())
        .map_err(Error::io(format!("cannot read {}", p.display())))
}

/// Adds (or replaces) a context from the global credential flags.
pub(super) fn add(g: &Globals, a: AddArgs) -> Result<(), Error> {
    for n in &a.nodes {
        NodeSpec::parse(n)?;
    }
    let (Some(ca), Some(cert), Some(key)) = (&g.ca, &g.cert, &g.key) else {
        return Err(Error::Usage(
            "add-context needs --ca, --cert and --key (the files are referenced, not copied)"
                .into(),
        ));
    };
    let path = file_path()?;
    let mut f = File::load(&path)?;
    f.contexts.insert(
        a.name.clone(),
        Context {
            nodes: a.nodes.clone(),
            ca: absolute(ca)?,
            cert: absolute(cert)?,
            key: absolute(key)?,
        },
    );
    if a.use_it || f.context.is_none() {
        f.context = Some(a.name.clone());
    }
    f.save(&path)?;
    println!(
        "context {}: {} node(s){}; in {}",
        a.name,
        a.nodes.len(),
        if f.context.as_deref() == Some(a.name.as_str()) {
            ", current"
        } else {
            ""
        },
        path.display()
    );
    Ok(())
}
