//! `berthctl gc`: one garbage collection now (GC service, `Collect`), and what it removed:
//! content records, blobs, snapshot records, backend snapshots, expired leases.

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{human_size, print_json, table, Format};

/// `gc` arguments.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    #[arg(long, value_parser = Format::undescribed(), default_value_t = Format::Table)]
    format: Format,
}

/// Collects and reports; errors of the collection itself go to standard error.
pub async fn run(g: &Globals, args: GcArgs) -> Result<(), Error> {
    let r = connect::storage(g).await?.collect().await?;
    if args.format == Format::Json {
        print_json(&serde_json::json!({
            "content_records": r.content_records,
            "blobs": r.blobs,
            "bytes_freed": r.bytes_freed,
            "snapshot_records": r.snapshot_records,
            "backend_snapshots": r.backend_snapshots,
            "expired_leases": r.expired_leases,
            "errors": r.errors,
            "duration_ns": r.duration_ns,
            "suspended": (!r.suspended.is_empty()).then_some(&r.suspended),
        }));
        return Ok(());
    }
    let mut rows = Vec::new();
    for (kind, list) in [
        ("content record", &r.content_records),
        ("blob", &r.blobs),
        ("snapshot record", &r.snapshot_records),
        ("snapshot", &r.backend_snapshots),
        ("expired lease", &r.expired_leases),
    ] {
        rows.extend(list.iter().map(|x| vec![kind.to_string(), x.clone()]));
    }
    if !rows.is_empty() {
        print!("{}", table(&["REMOVED", "ID"], &rows));
    }
    println!(
        "removed {} blobs ({} freed), {} content records, {} snapshots, {} expired leases in {} ms",
        r.blobs.len(),
        human_size(r.bytes_freed),
        r.content_records.len(),
        r.backend_snapshots.len(),
        r.expired_leases.len(),
        r.duration_ns / 1_000_000
    );
    if !r.suspended.is_empty() {
        println!("{}", r.suspended);
    }
    for e in &r.errors {
        eprintln!("berthctl: gc: {e}");
    }
    Ok(())
}
