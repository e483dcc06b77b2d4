//! Walk filters in containerd's syntax (`pkg/filters`), for the fields a snapshot has.
//!
//! A list of filters matches when any of them matches. One filter is `,`-separated clauses
//! that must all hold. A clause is a field path, optionally followed by an operator and a
//! value: `kind==active`, `parent!=""`, `labels."containerd.io/gc.root"`, `labels.l==2`.
//! Field paths are `name`, `parent`, `kind` and `labels.<key>`; path segments and values may
//! be double-quoted (needed when they contain `.`, `,` or `=`), with `\"` and `\\` escapes.
//! A clause without operator holds when the field is present. Operators are `==`, `!=` and
//! `~=` (the value is a regular expression, unanchored, matched against the field's value;
//! an invalid expression is an `InvalidArgument` error at parse time, where containerd only
//! logs it and matches nothing).

use super::{Error, Info, Result};

/// A parsed list of filters; the empty list matches everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    any: Vec<Vec<Clause>>,
}

#[derive(Debug, Clone)]
struct Clause {
    path: Vec<String>,
    op: Option<Op>,
}

#[derive(Debug, Clone)]
enum Op {
    Eq(String),
    Ne(String),
    Match(regex::Regex),
}

fn bad(filter: &str, why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument {
        reason: format!("bad filter {filter:?}: {why}"),
    }
}

struct Lexer<'a> {
    src: &'a str,
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
}

impl<'a> Lexer<'a> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|(_, c)| *c)
    }

    fn quoted(&mut self) -> Result<String> {
        self.chars.next(); // opening quote
        let mut s = String::new();
        loop {
            match self.chars.next() {
                Some((_, '"')) => return Ok(s),
                Some((_, '\\')) => match self.chars.next() {
                    Some((_, c)) => s.push(c),
                    None => return Err(bad(self.src, "unterminated escape")),
                },
                Some((_, c)) => s.push(c),
                None => return Err(bad(self.src, "unterminated quoted string")),
            }
        }
    }

    /// A bare or quoted word ending at any of `stop`.
    fn word(&mut self, stop: &[char]) -> Result<String> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if stop.contains(&c) {
                break;
            }
            if c == '"' {
                return Err(bad(self.src, "quote in the middle of a word"));
            }
            s.push(c);
            self.chars.next();
        }
        Ok(s.trim().to_string())
    }
}

fn parse_one(src: &str) -> Result<Vec<Clause>> {
    let mut lx = Lexer {
        src,
        chars: src.char_indices().peekable(),
    };
    let mut clauses = Vec::new();
    loop {
        let mut path = Vec::new();
        loop {
            let seg = lx.word(&['.', ',', '=', '!', '~'])?;
            if seg.is_empty() {
                return Err(bad(src, "empty field name"));
            }
            path.push(seg);
            if lx.peek() == Some('.') {
                lx.chars.next();
            } else {
                break;
            }
        }
        let op = match lx.peek() {
            Some('=') | Some('!') | Some('~') => {
                let first = lx.chars.next().map(|(_, c)| c);
                if lx.peek() != Some('=') {
                    return Err(bad(src, "expected ==, != or ~="));
                }
                lx.chars.next();
                let value = lx.word(&[','])?;
                Some(match first {
                    Some('=') => Op::Eq(value),
                    Some('!') => Op::Ne(value),
                    _ => Op::Match(
                        regex::Regex::new(&value)
                            .map_err(|e| bad(src, format!("bad regular expression: {e}")))?,
                    ),
                })
            }
            _ => None,
        };
        clauses.push(Clause { path, op });
        match lx.peek() {
            None => return Ok(clauses),
            Some(',') => {
                lx.chars.next();
            }
            Some(c) => return Err(bad(src, format!("unexpected {c:?}"))),
        }
    }
}

impl Filter {
    /// Parses filters; the result matches a snapshot when any filter matches.
    pub fn parse<S: AsRef<str>>(filters: &[S]) -> Result<Self> {
        let mut any = Vec::new();
        for f in filters {
            let f = f.as_ref();
            if f.trim().is_empty() {
                continue;
            }
            any.push(parse_one(f)?);
        }
        Ok(Filter { any })
    }

    /// True when `info` matches.
    pub fn matches(&self, info: &Info) -> bool {
        self.any.is_empty()
            || self
                .any
                .iter()
                .any(|clauses| clauses.iter().all(|c| c.holds(info)))
    }
}

impl Clause {
    /// The field's value, `None` when absent. As in containerd's snapshot adaptor, `name`,
    /// `parent` and `kind` are absent when empty; a label is present when its key exists, even
    /// with an empty value.
    fn field<'a>(&self, info: &'a Info) -> Option<&'a str> {
        let non_empty = |s: &'a str| (!s.is_empty()).then_some(s);
        match self.path.as_slice() {
            [f] if f == "name" => non_empty(&info.name),
            [f] if f == "parent" => non_empty(&info.parent),
            [f] if f == "kind" => Some(info.kind.as_str()),
            [f, rest @ ..] if f == "labels" && !rest.is_empty() => {
                info.labels.get(&rest.join(".")).map(String::as_str)
            }
            _ => None,
        }
    }

    /// containerd's `pkg/filters` semantics: `==` needs the field present and equal; `!=`
    /// compares the value (empty when absent), so `parent!=""` selects snapshots with a parent.
    fn holds(&self, info: &Info) -> bool {
        let v = self.field(info);
        match &self.op {
            None => v.is_some(),
            Some(Op::Eq(want)) => v.is_some_and(|v| v == want),
            Some(Op::Ne(want)) => v.unwrap_or("") != want,
            Some(Op::Match(re)) => re.is_match(v.unwrap_or("")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::Kind;
    use berth_api::errdefs::{Classify, Kind as ErrKind};
    use std::time::UNIX_EPOCH;

    fn info(name: &str, kind: Kind, parent: &str, labels: &[(&str, &str)]) -> Info {
        Info {
            kind,
            name: name.into(),
            parent: parent.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created: UNIX_EPOCH,
            updated: UNIX_EPOCH,
        }
    }

    #[test]
    fn containerd_walk_filters() {
        let a = info(
            "a-wl",
            Kind::Active,
            "p-wl",
            &[("l", "2"), ("containerd.io/gc.root", "x")],
        );
        let p = info("p", Kind::Committed, "", &[("containerd.io/gc.root", "x")]);
        let m = |f: &[&str], i: &Info| Filter::parse(f).unwrap().matches(i);
        assert!(m(&[r#"labels."containerd.io/gc.root"==x"#], &a));
        assert!(m(
            &[r#"kind==active,labels."containerd.io/gc.root"==x"#],
            &a
        ));
        assert!(!m(
            &[r#"kind==active,labels."containerd.io/gc.root"==x"#],
            &p
        ));
        assert!(m(&["name==p", "name==a-np-wl"], &p));
        assert!(m(&["name==a-wl,labels.l"], &a));
        assert!(!m(&["labels.l"], &p));
        assert!(m(&[r#"parent!="""#], &a));
        assert!(!m(&[r#"parent!="""#], &p));
        assert!(m(&["labels.l==2"], &a));
        assert!(!m(&["labels.l==3"], &a));
        assert!(m(&[] as &[&str], &a));
        assert!(!m(&["nosuchfield==1"], &a));
        let empty = info("e", Kind::View, "", &[("flag", "")]);
        assert!(
            m(&["labels.flag"], &empty),
            "a label with an empty value is present"
        );
        assert!(m(&["labels.flag=="], &empty));
        assert!(!m(&["parent"], &empty), "an empty parent is absent");
        assert!(!m(&[r#"parent=="""#], &empty), "== needs the field present");
        assert!(m(&["name~=^a-"], &a));
        assert!(m(&[r#"labels."containerd.io/gc.root"~=x|y"#], &p));
        assert!(!m(&["name~=^p$"], &a));
        assert!(m(&["name~=^p$"], &p));
    }

    #[test]
    fn bad_filters_are_invalid_arguments() {
        for f in [
            "kind=active",
            r#"labels."x"#,
            "name~=(",
            ".x",
            "a==b,",
            "kind>=1",
        ] {
            let e = Filter::parse(&[f]).unwrap_err();
            assert_eq!(e.kind(), ErrKind::InvalidArgument, "{f}: {e}");
            assert!(e.to_string().contains(&format!("{f:?}")), "{e}");
        }
    }
}
