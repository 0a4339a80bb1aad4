//! Dotted field paths as `replacements` and `vars` write them (`spec.containers.[name=web].image`,
//! `spec.ports.0.port`, `spec.containers.*.env`), read and written the way kyaml does: a source
//! path names one node, a target path may name many and may create what is missing.

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    /// A map key.
    Field(String),
    /// A list position (`0`).
    Index(usize),
    /// The last list element (`-`, in source paths only).
    Last,
    /// The list elements whose `field` matches `value` (`[name=web]`); a primitive list when
    /// `field` is empty (`[=-jar]`).
    Match { field: String, value: String },
    /// Every list element (`*`, in target paths only).
    Every,
}

/// Splits a path at `.` as kyaml's `SmarterPathSplitter` does: `\.` escapes a dot, and a
/// `[…]` list selector holding dots stays whole.
pub fn split(path: &str) -> Vec<String> {
    let mut raw: Vec<String> = Vec::new();
    let mut pieces: Vec<&str> = path.split('.').collect();
    if pieces.len() > 1 && pieces[0].is_empty() {
        pieces.remove(0);
    }
    for piece in pieces {
        match raw.last_mut() {
            Some(last) if last.ends_with('\\') => {
                last.pop();
                last.push('.');
                last.push_str(piece);
            }
            _ => raw.push(piece.to_string()),
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let elem = &raw[i];
        if elem.starts_with('[') && !elem.ends_with(']') {
            let mut bracketed = vec![elem.clone()];
            while i < raw.len() - 1 {
                i += 1;
                bracketed.push(raw[i].clone());
                if raw[i].ends_with(']') {
                    break;
                }
            }
            let joined = bracketed.join(".");
            if joined.contains('=') {
                out.push(joined);
            } else {
                out.push(joined.trim_matches(['[', ']']).to_string());
            }
        } else {
            out.push(elem.clone());
        }
        i += 1;
    }
    out
}

fn list_selector(part: &str) -> Result<Part, String> {
    let inner = &part[1..part.len() - 1];
    match inner.split_once('=') {
        Some((field, value)) => Ok(Part::Match {
            field: field.to_string(),
            value: value.to_string(),
        }),
        None => Err(format!(
            "{part}: a list selector must be [field=value] (or [=value])"
        )),
    }
}

fn is_list_selector(part: &str) -> bool {
    part.len() >= 2 && part.starts_with('[') && part.ends_with(']')
}

/// Parses a target path (kyaml's `PathMatcher`): numbers index lists, `*` is every element.
pub fn parse_target(path: &str) -> Result<Vec<Part>, String> {
    split(path)
        .into_iter()
        .map(|part| {
            if let Ok(i) = part.parse::<usize>() {
                Ok(Part::Index(i))
            } else if is_list_selector(&part) {
                list_selector(&part)
            } else if part == "*" {
                Ok(Part::Every)
            } else {
                Ok(Part::Field(part))
            }
        })
        .collect()
}

/// Parses a source path (kyaml's `Lookup`): numbers index lists, `-` is the last element,
/// `name[2]` is `name.2` (as `vars` allow), and there are no wildcards.
pub fn parse_source(path: &str) -> Result<Vec<Part>, String> {
    let mut out = Vec::new();
    for part in split(path) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if let Ok(i) = part.parse::<i64>() {
            let i = usize::try_from(i).map_err(|_| format!("list index {i} cannot be negative"))?;
            out.push(Part::Index(i));
        } else if part == "-" {
            out.push(Part::Last);
        } else if part == "*" {
            return Err("a wildcard (*) cannot select a source value".into());
        } else if is_list_selector(part) {
            out.push(list_selector(part)?);
        } else if let Some((name, index)) = part
            .strip_suffix(']')
            .and_then(|p| p.rsplit_once('['))
            .filter(|(_, i)| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        {
            if !name.is_empty() {
                out.push(Part::Field(name.to_string()));
            }
            out.push(Part::Index(
                index.parse().map_err(|_| format!("{part}: bad index"))?,
            ));
        } else {
            out.push(Part::Field(part.to_string()));
        }
    }
    Ok(out)
}

/// The text of a scalar as YAML wrote it (strings unquoted), or `None` for maps and lists.
pub fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// The node a source path names, or `None` when it is missing.
pub fn lookup<'v>(node: &'v Value, path: &[Part]) -> Result<Option<&'v Value>, String> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(Some(node));
    };
    if node.is_null() {
        return Ok(None);
    }
    let next = match first {
        Part::Field(key) => match node {
            Value::Object(map) => map.get(key),
            _ => return Err(format!("{key}: expected a map, found {}", kind_of(node))),
        },
        Part::Index(_) | Part::Last | Part::Match { .. } => {
            let Value::Array(items) = node else {
                return Err(format!("expected a list, found {}", kind_of(node)));
            };
            match first {
                Part::Index(i) => items.get(*i),
                Part::Last => items.last(),
                Part::Match { field, value } if field.is_empty() => items
                    .iter()
                    .find(|item| scalar_text(item).as_deref() == Some(value)),
                Part::Match { field, value } => items.iter().find(|item| {
                    item.get(field).and_then(scalar_text).as_deref() == Some(value.as_str())
                }),
                _ => None,
            }
        }
        Part::Every => return Err("a wildcard (*) cannot select a source value".into()),
    };
    match next {
        Some(child) => lookup(child, rest),
        None => Ok(None),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "a map",
        Value::Array(_) => "a list",
        _ => "a scalar",
    }
}

/// What to create where a target path is missing: a node shaped like the value to be written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Create {
    Map,
    List,
    Scalar,
}

impl Create {
    pub fn like(value: &Value) -> Self {
        match value {
            Value::Object(_) => Create::Map,
            Value::Array(_) => Create::List,
            _ => Create::Scalar,
        }
    }

    fn empty(self) -> Value {
        match self {
            Create::Map => Value::Object(Map::new()),
            Create::List => Value::Array(Vec::new()),
            Create::Scalar => Value::Null,
        }
    }
}

/// The node to create for a missing part, given the part after it.
fn shape_for(next: Option<&Part>, create: Create) -> Value {
    match next {
        None => create.empty(),
        Some(Part::Index(_) | Part::Match { .. }) => Value::Array(Vec::new()),
        Some(_) => Value::Object(Map::new()),
    }
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(pattern).map_err(|e| format!("[{pattern}]: bad pattern: {e}"))
}

/// Calls `f` on every node a target path names (kyaml's `PathMatcher`), creating missing parts
/// when `create` is set; returns how many nodes it visited.
pub fn visit_targets(
    node: &mut Value,
    path: &[Part],
    create: Option<Create>,
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<usize, String> {
    let Some((first, rest)) = path.split_first() else {
        f(node)?;
        return Ok(1);
    };
    if node.is_null() && !matches!(first, Part::Field(_)) {
        return Ok(0);
    }
    match first {
        Part::Field(key) => {
            let map = match node {
                Value::Object(map) => map,
                Value::Null => return Ok(0),
                other => {
                    return Err(format!("{key}: expected a map, found {}", kind_of(other)));
                }
            };
            if !map.contains_key(key) {
                let Some(create) = create else {
                    return Ok(0);
                };
                map.insert(key.clone(), shape_for(rest.first(), create));
            }
            match map.get_mut(key) {
                Some(child) => visit_targets(child, rest, create, f),
                None => Ok(0),
            }
        }
        Part::Last => Err("- names no target position".into()),
        Part::Index(i) => {
            let items = list_of(node)?;
            if items.len() == *i
                && let Some(create) = create
            {
                items.push(shape_for(rest.first(), create));
            }
            let len = items.len();
            match items.get_mut(*i) {
                Some(item) => visit_targets(item, rest, create, f),
                None => Err(format!("index {i} specified but only {len} elements found")),
            }
        }
        Part::Every => {
            let mut count = 0;
            for item in list_of(node)? {
                count += visit_targets(item, rest, create, f)?;
            }
            Ok(count)
        }
        Part::Match { field, value } => {
            let pattern = compile(value)?;
            let matches = |item: &Value| -> bool {
                let text = if field.is_empty() {
                    scalar_text(item)
                } else {
                    item.get(field)
                        .filter(|v| !v.is_null())
                        .and_then(scalar_text)
                };
                text.is_some_and(|t| pattern.is_match(t.trim()))
            };
            let items = list_of(node)?;
            let mut count = 0;
            let mut found = false;
            for item in items.iter_mut() {
                if matches(item) {
                    found = true;
                    count += visit_targets(item, rest, create, f)?;
                }
            }
            if found || create.is_none() {
                return Ok(count);
            }
            let text = Value::String(value.clone());
            items.push(if field.is_empty() {
                text
            } else {
                let mut m = Map::new();
                m.insert(field.clone(), text);
                Value::Object(m)
            });
            let last = items.len() - 1;
            visit_targets(&mut items[last], rest, create, f)
        }
    }
}

fn list_of(node: &mut Value) -> Result<&mut Vec<Value>, String> {
    match node {
        Value::Array(items) => Ok(items),
        other => Err(format!("expected a list, found {}", kind_of(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(s: &str) -> Part {
        Part::Field(s.into())
    }

    #[test]
    fn paths_split_like_kyaml() {
        let table: &[(&str, &[&str])] = &[
            ("metadata.name", &["metadata", "name"]),
            (".metadata.name", &["metadata", "name"]),
            (
                "metadata.annotations.a\\.b/c",
                &["metadata", "annotations", "a.b/c"],
            ),
            (
                "spec.containers.[name=web.1].image",
                &["spec", "containers", "[name=web.1]", "image"],
            ),
            ("a.[x.y].b", &["a", "x.y", "b"]),
            ("a.[=-jar]", &["a", "[=-jar]"]),
            ("a", &["a"]),
        ];
        for (path, expected) in table {
            assert_eq!(split(path), *expected, "{path}");
        }
    }

    #[test]
    fn target_paths_parse_into_parts() {
        let m = |f: &str, v: &str| Part::Match {
            field: f.into(),
            value: v.into(),
        };
        let table: Vec<(&str, Vec<Part>)> = vec![
            ("spec.replicas", vec![field("spec"), field("replicas")]),
            ("a.0.b", vec![field("a"), Part::Index(0), field("b")]),
            ("a.*.b", vec![field("a"), Part::Every, field("b")]),
            ("a.[name=x]", vec![field("a"), m("name", "x")]),
            ("a.[=x]", vec![field("a"), m("", "x")]),
            ("a.-", vec![field("a"), field("-")]),
        ];
        for (path, expected) in table {
            assert_eq!(parse_target(path).unwrap(), expected, "{path}");
        }
        assert!(parse_target("a.[0]").is_err());
    }

    #[test]
    fn source_paths_parse_into_parts() {
        let table: Vec<(&str, Vec<Part>)> = vec![
            ("a.-", vec![field("a"), Part::Last]),
            (
                "ports[1].port",
                vec![field("ports"), Part::Index(1), field("port")],
            ),
            ("a..b", vec![field("a"), field("b")]),
        ];
        for (path, expected) in table {
            assert_eq!(parse_source(path).unwrap(), expected, "{path}");
        }
        for bad in ["a.*", "a.-1", "a.[x]"] {
            assert!(parse_source(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookups_find_one_node() {
        let doc = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "ab", "image": "y"}], "args": ["-v", "-jar"]}});
        let table: &[(&str, Option<Value>)] = &[
            ("spec.containers.[name=ab].image", Some(json!("y"))),
            ("spec.containers.[name=a].image", Some(json!("x"))),
            ("spec.containers.1.image", Some(json!("y"))),
            ("spec.containers.-.name", Some(json!("ab"))),
            ("spec.args.[=-jar]", Some(json!("-jar"))),
            ("spec.containers.[name=zz].image", None),
            ("spec.missing.deeper", None),
        ];
        for (path, expected) in table {
            let parts = parse_source(path).unwrap();
            assert_eq!(lookup(&doc, &parts).unwrap().cloned(), *expected, "{path}");
        }
        assert!(lookup(&doc, &parse_source("spec.containers.name").unwrap()).is_err());
    }

    #[test]
    fn targets_match_many_and_create_what_is_missing() {
        let doc = json!({"spec": {"containers": [{"name": "web", "image": "x"}, {"name": "web2", "image": "y"}, {"name": "db"}]}});
        let table: &[(&str, Option<Create>, usize, Value)] = &[
            (
                "spec.containers.[name=web].image",
                None,
                2,
                json!({"spec": {"containers": [{"name": "web", "image": "Z"}, {"name": "web2", "image": "Z"}, {"name": "db"}]}}),
            ),
            (
                "spec.containers.*.image",
                None,
                2,
                json!({"spec": {"containers": [{"name": "web", "image": "Z"}, {"name": "web2", "image": "Z"}, {"name": "db"}]}}),
            ),
            (
                "spec.containers.*.image",
                Some(Create::Scalar),
                3,
                json!({"spec": {"containers": [{"name": "web", "image": "Z"}, {"name": "web2", "image": "Z"}, {"name": "db", "image": "Z"}]}}),
            ),
            (
                "spec.containers.[name=cache].image",
                Some(Create::Scalar),
                1,
                json!({"spec": {"containers": [{"name": "web", "image": "x"}, {"name": "web2", "image": "y"}, {"name": "db"}, {"name": "cache", "image": "Z"}]}}),
            ),
            ("spec.other.field", None, 0, doc.clone()),
            (
                "spec.other.0",
                Some(Create::Scalar),
                1,
                json!({"spec": {"containers": [{"name": "web", "image": "x"}, {"name": "web2", "image": "y"}, {"name": "db"}], "other": ["Z"]}}),
            ),
        ];
        for (path, create, count, expected) in table {
            let mut value = doc.clone();
            let n = visit_targets(
                &mut value,
                &parse_target(path).unwrap(),
                *create,
                &mut |v| {
                    *v = json!("Z");
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!((n, &value), (*count, expected), "{path}");
        }
        let mut value = doc.clone();
        assert!(
            visit_targets(
                &mut value,
                &parse_target("spec.containers.5").unwrap(),
                None,
                &mut |_| Ok(())
            )
            .is_err()
        );
    }
}
