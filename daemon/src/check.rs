//! `berthd --check-config`: the configuration judged as berthd would load it, without
//! serving — the main file and its imports (with `--override LIVE=CANDIDATE` replacing or, with
//! an empty candidate, leaving out an imported drop-in), every plugin section a start reads,
//! and `--check-hosts DIR` registry host directories as a pull reads them. berth-init runs it
//! before it writes a node configuration change (`berthctl node config put`), so a drop-in
//! that would keep berthd from starting is refused instead of written.

use std::path::PathBuf;

use berth_engine::config::{Config, Overrides};

/// Checks; returns a one-line summary or the first problem.
pub fn check(
    config: Option<PathBuf>,
    overrides: &[String],
    hosts: &[PathBuf],
) -> Result<String, String> {
    let mut o = Overrides::new();
    for entry in overrides {
        let (live, candidate) = entry
            .split_once('=')
            .ok_or_else(|| format!("--override {entry:?}: expected LIVE=CANDIDATE"))?;
        o.insert(
            live.into(),
            (!candidate.is_empty()).then(|| PathBuf::from(candidate)),
        );
    }
    let cfg = match config {
        Some(p) => Config::load_with(&p, &o).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let err = |e: &dyn std::fmt::Display| e.to_string();
    berth_engine::remotes::config::RegistryConfig::from_plugins(&cfg.plugins, &cfg.sources)
        .map_err(|e| err(&e))?;
    berth_engine::preload::PreloadConfig::from_plugins(&cfg.plugins, &cfg.sources)
        .map_err(|e| err(&e))?;
    berth_engine::tasks::runtimes::Runtimes::from_plugins(&cfg.plugins, &cfg.sources)
        .map_err(|e| err(&e))?;
    berth_engine::tasks::boot_containers::BootConfig::from_plugins(&cfg.plugins, &cfg.sources)
        .map_err(|e| err(&e))?;
    let mut endpoints = 0;
    for dir in hosts {
        endpoints += berth_engine::remotes::hosts::check_dir(dir)
            .map_err(|e| format!("{}: {}", dir.display(), berth_api::errdefs::chain(&e)))?;
    }
    Ok(format!(
        "configuration OK: {} file(s){}",
        cfg.sources.len(),
        if hosts.is_empty() {
            String::new()
        } else {
            format!(
                ", {} host director(ies) with {endpoints} endpoint(s)",
                hosts.len()
            )
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_drop_in_or_hosts_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berthd.toml");
        std::fs::write(&main, "version = 1\nimports = [\"d/*.toml\"]\n").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let cand = dir.path().join("cand.toml");
        std::fs::write(&cand, "[debug]\nlevel = \"loud\"\n").unwrap();
        let live = dir.path().join("d/10.toml").display().to_string();
        let o = [format!("{live}={}", cand.display())];
        let e = check(Some(main.clone()), &o, &[]).unwrap_err();
        assert!(e.contains("cand.toml:2: key debug.level"), "{e}");
        std::fs::write(&cand, "[debug]\nlevel = \"debug\"\n").unwrap();
        check(Some(main.clone()), &o, &[]).unwrap();
        let hosts = dir.path().join("h");
        std::fs::create_dir(&hosts).unwrap();
        std::fs::write(hosts.join("hosts.toml"), "server = 5\n").unwrap();
        let e = check(Some(main.clone()), &[], std::slice::from_ref(&hosts)).unwrap_err();
        assert!(e.contains("hosts.toml"), "{e}");
        std::fs::write(
            hosts.join("hosts.toml"),
            "server = \"http://10.0.2.2:5000\"\n",
        )
        .unwrap();
        let ok = check(Some(main), &[], &[hosts]).unwrap();
        assert!(ok.contains("1 endpoint(s)"), "{ok}");
    }
}
