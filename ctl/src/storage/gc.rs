//! `berthctl gc`: one collection now, and what it removed.

use clap::Args;

use super::{human_size, Error, Format};
use berth_api::client::StorageClient;

#[derive(Debug, Args)]
pub struct GcArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn run(client: &StorageClient, args: GcArgs) -> Result<(), Error> {
    let r = client.collect().await?;
    if args.format == Format::Json {
        let v = serde_json::json!({
            "content_records": r.content_records,
            "blobs": r.blobs,
            "bytes_freed": r.bytes_freed,
            "snapshot_records": r.snapshot_records,
            "backend_snapshots": r.backend_snapshots,
            "expired_leases": r.expired_leases,
            "errors": r.errors,
            "duration_ns": r.duration_ns,
            "suspended": (!r.suspended.is_empty()).then_some(&r.suspended),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("json of plain values")
        );
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
        print!("{}", crate::table(&["REMOVED", "ID"], &rows));
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
