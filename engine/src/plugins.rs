//! The engine's plugin registry: what berthd loaded, skipped or failed, and why.
//!
//! Like containerd, each part of the engine registers as a plugin with a type and an id; its
//! initialisation either succeeds, is skipped because a precondition does not hold on this node
//! (the reason is kept for `berthctl plugins ls`), or fails with an error. A skipped or failed
//! plugin never stops the others.

use std::collections::BTreeMap;

/// Outcome of one plugin's initialisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok,
    Skipped(String),
    Error(String),
}

/// One registered plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugin {
    pub kind: String,
    pub id: String,
    pub requires: Vec<String>,
    pub status: Status,
    pub exports: BTreeMap<String, String>,
}

/// The plugins of a running engine, in registration order.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    plugins: Vec<Plugin>,
}

/// A filter of `berthctl plugins ls` / the Plugins call: `type==X` or `id==Y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Type(String),
    Id(String),
}

/// A filter string that is neither `type==…` nor `id==…`.
#[derive(Debug, thiserror::Error)]
#[error("bad plugin filter {0:?}: expected type==<type> or id==<id>")]
pub struct BadFilter(pub String);

impl std::str::FromStr for Filter {
    type Err = BadFilter;
    fn from_str(s: &str) -> Result<Self, BadFilter> {
        let (k, v) = s.split_once("==").ok_or_else(|| BadFilter(s.to_string()))?;
        let v = v.trim();
        if v.is_empty() {
            return Err(BadFilter(s.to_string()));
        }
        match k.trim() {
            "type" => Ok(Filter::Type(v.to_string())),
            "id" => Ok(Filter::Id(v.to_string())),
            _ => Err(BadFilter(s.to_string())),
        }
    }
}

impl Registry {
    /// Records a plugin and how its initialisation went.
    pub fn register(&mut self, kind: &str, id: &str, status: Status) -> &mut Plugin {
        self.plugins.push(Plugin {
            kind: kind.to_string(),
            id: id.to_string(),
            requires: Vec::new(),
            status,
            exports: BTreeMap::new(),
        });
        self.plugins.last_mut().expect("just pushed")
    }

    /// All plugins matching every filter.
    pub fn list(&self, filters: &[Filter]) -> Vec<&Plugin> {
        self.plugins
            .iter()
            .filter(|p| {
                filters.iter().all(|f| match f {
                    Filter::Type(t) => &p.kind == t,
                    Filter::Id(i) => &p.id == i,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let mut r = Registry::default();
        r.register("berth.service.v1", "version", Status::Ok);
        r.register(
            "berth.snapshotter.v1",
            "zfs",
            Status::Skipped("no pool".into()),
        );
        let f: Filter = "type==berth.service.v1".parse().unwrap();
        assert_eq!(r.list(&[f]).len(), 1);
        let f: Filter = "id == zfs".parse().unwrap();
        assert_eq!(r.list(&[f])[0].status, Status::Skipped("no pool".into()));
        assert_eq!(r.list(&[]).len(), 2);
        assert!("kind=x".parse::<Filter>().is_err());
        assert!("id==".parse::<Filter>().is_err());
    }
}
