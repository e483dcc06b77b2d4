//! Helpers for layering TOML configuration files key by key.
//!
//! init's configuration comes from several files (the image's `/etc/berth/init.toml`, the
//! node file on the state disk) and the kernel command line. A bad value must cost only that
//! value: the key is reported with its file and line and dropped, and the node runs with the
//! value of the layer below (ultimately the built-in default). These helpers address a key by
//! the dotted path `serde_path_to_error` reports (`berthd.max_failures`, `service[1].path`),
//! remove it from a parsed table, find its line in the file's text, and merge tables.

/// One step of a dotted key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Splits `a.b[2].c` into segments. Returns `None` for an empty path.
pub fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if key.is_empty() {
            return None;
        }
        segments.push(Segment::Key(key.to_string()));
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped.find(']')?;
            segments.push(Segment::Index(stripped[..end].parse().ok()?));
            rest = &stripped[end + 1..];
        }
    }
    (!segments.is_empty()).then_some(segments)
}

/// Removes the value at `path` from `table`. Returns whether something was removed.
pub fn remove_path(table: &mut toml::Table, path: &str) -> bool {
    let Some(segments) = parse_path(path) else {
        return false;
    };
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let Some(Segment::Key(first)) = parents.first().or(Some(last)) else {
        return false;
    };
    if parents.is_empty() {
        return table.remove(first).is_some();
    }
    let Some(mut value) = table.get_mut(first) else {
        return false;
    };
    for segment in &parents[1..] {
        value = match (segment, value) {
            (Segment::Key(k), toml::Value::Table(t)) => match t.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Index(i), toml::Value::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, value) {
        (Segment::Key(k), toml::Value::Table(t)) => t.remove(k).is_some(),
        (Segment::Index(i), toml::Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// 1-based line where `path` is set in `text`: the `key = …` line under the matching
/// `[table]` / `[[array]]` header, or the header itself when `path` names a table. Covers the
/// shapes init's files use (headers plus plain keys); `None` when not found.
pub fn find_line(text: &str, path: &str) -> Option<usize> {
    let segments = parse_path(path)?;
    let want = render(&segments);
    let (parent, leaf) = match segments.split_last()? {
        (Segment::Key(leaf), parent) => (render(parent), leaf.clone()),
        (Segment::Index(_), _) => (want.clone(), String::new()),
    };
    let mut header = String::new();
    let mut counters: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = name.trim().to_string();
            let index = counters.entry(name.clone()).or_insert(0);
            header = format!("{name}[{index}]");
            *index += 1;
            if header == want {
                return Some(n + 1);
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            header = name.trim().to_string();
            if header == want {
                return Some(n + 1);
            }
            continue;
        }
        if leaf.is_empty() || header != parent {
            continue;
        }
        let key = line
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if line.contains('=') && key == leaf {
            return Some(n + 1);
        }
    }
    None
}

fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Merges `over` into `base`, later wins key by key: tables merge recursively, other values
/// replace, except the top-level arrays named in `append` (e.g. `service`), whose entries are
/// added after the lower layer's so a node file can add services without repeating the
/// image's.
pub fn merge(base: &mut toml::Table, over: toml::Table, append: &[&str]) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o, &[]),
            (Some(toml::Value::Array(b)), toml::Value::Array(o))
                if append.contains(&key.as_str()) =>
            {
                b.extend(o)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(parse_path("a"), Some(vec![Segment::Key("a".into())]));
        assert_eq!(
            parse_path("service[1].path"),
            Some(vec![
                Segment::Key("service".into()),
                Segment::Index(1),
                Segment::Key("path".into())
            ])
        );
        assert_eq!(parse_path(""), None);
        assert_eq!(parse_path("a[x]"), None);
    }

    #[test]
    fn removes_nested_keys_and_array_entries() {
        let mut t: toml::Table =
            "[berthd]\nmax_failures = 'x'\npath = '/b'\n[[service]]\nname = 'a'\n[[service]]\nname = 'b'\npath = 5\n".parse().unwrap();
        assert!(remove_path(&mut t, "berthd.max_failures"));
        assert!(!t["berthd"].as_table().unwrap().contains_key("max_failures"));
        assert!(remove_path(&mut t, "service[1].path"));
        assert!(remove_path(&mut t, "service[0]"));
        assert_eq!(t["service"].as_array().unwrap().len(), 1);
        assert!(!remove_path(&mut t, "nope.x"));
        assert!(remove_path(&mut t, "berthd"));
    }

    #[test]
    fn finds_lines() {
        let text = "# c\n[console]\nlevel = 'x'\n\n[berthd]\npath = '/b'\nmax_failures = 3\n[[service]]\nname = 'a'\n[[service]]\nname = 'b'\npath = 5\n[bogus]\n";
        assert_eq!(find_line(text, "console.level"), Some(3));
        assert_eq!(find_line(text, "berthd.max_failures"), Some(7));
        assert_eq!(find_line(text, "service[1].path"), Some(12));
        assert_eq!(find_line(text, "service[1]"), Some(10));
        assert_eq!(find_line(text, "bogus"), Some(13));
        assert_eq!(find_line(text, "berthd.nothing"), None);
    }

    #[test]
    fn merges_later_wins_and_appends_services() {
        let mut base: toml::Table = "[a]\nx = 1\ny = 2\nlist = [1, 2]\n[[service]]\nname = 's1'\n"
            .parse()
            .unwrap();
        let over: toml::Table = "[a]\ny = 3\nlist = [9]\n[[service]]\nname = 's2'\n"
            .parse()
            .unwrap();
        merge(&mut base, over, &["service"]);
        assert_eq!(base["a"]["x"].as_integer(), Some(1));
        assert_eq!(base["a"]["y"].as_integer(), Some(3));
        assert_eq!(base["a"]["list"].as_array().unwrap().len(), 1);
        assert_eq!(base["service"].as_array().unwrap().len(), 2);
    }
}
