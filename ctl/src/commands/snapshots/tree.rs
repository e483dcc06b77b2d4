//! `berthctl snapshots tree`: the snapshots (Snapshots service, `List`) as a tree of parents
//! and children.

use std::collections::{BTreeMap, BTreeSet};

use berth_api::proto::snapshots as pb;

use super::Snapshots;
use crate::error::Error;

/// Prints the tree.
pub(super) async fn run(s: &Snapshots) -> Result<(), Error> {
    print!("{}", tree(&s.list(Vec::new()).await?));
    Ok(())
}

/// The tree of `infos`: roots (no parent, or a parent not listed) first, children indented
/// under their parent with `\_ `, each level sorted by name.
fn tree(infos: &[pb::Info]) -> String {
    let names: BTreeSet<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut roots = Vec::new();
    for i in infos {
        if i.parent.is_empty() || !names.contains(i.parent.as_str()) {
            roots.push(i.name.as_str());
        } else {
            children
                .entry(i.parent.as_str())
                .or_default()
                .push(i.name.as_str());
        }
    }
    roots.sort();
    let mut out = String::new();
    fn walk(out: &mut String, children: &BTreeMap<&str, Vec<&str>>, name: &str, depth: usize) {
        if depth == 0 {
            out.push_str(name);
        } else {
            out.push_str(&format!("{}\\_ {name}", "  ".repeat(depth)));
        }
        out.push('\n');
        if let Some(kids) = children.get(name) {
            let mut kids = kids.clone();
            kids.sort();
            for k in kids {
                walk(out, children, k, depth + 1);
            }
        }
    }
    for r in roots {
        walk(&mut out, &children, r, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, parent: &str) -> pb::Info {
        pb::Info {
            name: name.into(),
            parent: parent.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tree_nests_children_under_parents() {
        let t = tree(&[
            info("c", "b"),
            info("a", ""),
            info("b", "a"),
            info("v", "a"),
            info("x", ""),
        ]);
        assert_eq!(t, "a\n  \\_ b\n    \\_ c\n  \\_ v\nx\n");
    }
}
