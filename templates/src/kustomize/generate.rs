//! `configMapGenerator` and `secretGenerator`, and the content-hash name suffix kustomize gives
//! generated objects.

use super::kustomization::{Generator, GeneratorOptions, pairs_to_map};
use super::{Ctx, Error, Resource};
use crate::Origin;
use crate::source::{self, Source};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use sha2::Digest;

/// Adds the generators' objects of one kustomization to `resources`.
pub(crate) fn run(
    source: &dyn Source,
    ctx: &Ctx,
    resources: &mut Vec<Resource>,
) -> Result<(), Error> {
    for (key, generators, secret) in [
        ("configMapGenerator", &ctx.k.config_map_generator, false),
        ("secretGenerator", &ctx.k.secret_generator, true),
    ] {
        for (index, g) in generators.iter().enumerate() {
            let at = super::locate_item(&ctx.text, key, index);
            let generated = generate(source, ctx, key, g, secret, at)?;
            place(ctx, g, generated, resources, at)?;
        }
    }
    Ok(())
}

fn merged_options(
    global: Option<&GeneratorOptions>,
    local: Option<&GeneratorOptions>,
) -> GeneratorOptions {
    let mut out = global.cloned().unwrap_or_default();
    if let Some(local) = local {
        out.labels.extend(local.labels.clone());
        out.annotations.extend(local.annotations.clone());
        // A global `true` is not undone by a local `false`, as in kustomize.
        if local.disable_name_suffix_hash == Some(true) {
            out.disable_name_suffix_hash = Some(true);
        }
        if local.immutable == Some(true) {
            out.immutable = Some(true);
        }
    }
    out
}

/// Strips one pair of matching quotes, as kustomize does for literal values.
fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

fn generate(
    source: &dyn Source,
    ctx: &Ctx,
    key: &str,
    g: &Generator,
    secret: bool,
    at: usize,
) -> Result<Resource, Error> {
    let invalid = |line: usize, message: String| Error::Invalid {
        file: ctx.file.clone(),
        line,
        message,
    };
    // The line of `needle` within this generator's entry.
    let line_of = |needle: &str| {
        ctx.text
            .lines()
            .enumerate()
            .skip(at - 1)
            .find(|(_, l)| l.contains(needle))
            .map_or(at, |(i, _)| i + 1)
    };
    if g.name.is_empty() {
        return Err(invalid(at, format!("{key}: an entry has no name")));
    }
    let mut pairs: Vec<(String, Vec<u8>, usize)> = Vec::new();
    let mut env_files: Vec<&String> = g.envs.iter().collect();
    if let Some(env) = &g.env {
        env_files.push(env);
    }
    for env in env_files {
        let (path, text) = ctx.read(source, key, env)?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start_matches('\u{feff}').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(Error::Invalid {
                    file: path,
                    line: n + 1,
                    message: format!(
                        "{line}: expected KEY=VALUE (values from the environment are not read)"
                    ),
                });
            };
            pairs.push((k.trim().to_string(), v.as_bytes().to_vec(), line_of(env)));
        }
    }
    for literal in &g.literals {
        let Some((k, v)) = literal.split_once('=') else {
            return Err(invalid(
                line_of(literal),
                format!("{literal}: expected KEY=VALUE"),
            ));
        };
        pairs.push((
            k.to_string(),
            unquote(v).as_bytes().to_vec(),
            line_of(literal),
        ));
    }
    for file in &g.files {
        let (k, relative) = match file.split_once('=') {
            Some((k, p)) => (k.to_string(), p),
            None => (source::file_name(file).to_string(), file.as_str()),
        };
        let line = line_of(file);
        let path = source::join(&ctx.dir, relative).map_err(|e| Error::Source {
            file: ctx.file.clone(),
            line,
            source: e,
        })?;
        if source.kind(&path) != Some(crate::source::EntryKind::File) {
            return Err(Error::Missing {
                file: ctx.file.clone(),
                line,
                path,
            });
        }
        let bytes = source.read(&path).map_err(|e| Error::Source {
            file: ctx.file.clone(),
            line,
            source: e,
        })?;
        pairs.push((k, bytes, line));
    }
    let mut data = Map::new();
    let mut binary = Map::new();
    for (k, v, line) in pairs {
        if data.contains_key(&k) || binary.contains_key(&k) {
            return Err(Error::Invalid {
                file: ctx.file.clone(),
                line,
                message: format!("{}: key {k} is given twice", g.name),
            });
        }
        if secret {
            data.insert(k, Value::String(wrapped_base64(&v)));
        } else {
            match String::from_utf8(v) {
                Ok(s) => {
                    data.insert(k, Value::String(s));
                }
                Err(e) => {
                    binary.insert(k, Value::String(wrapped_base64(e.as_bytes())));
                }
            }
        }
    }
    let options = merged_options(ctx.k.generator_options.as_ref(), g.options.as_ref());
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(g.name.clone()));
    if let Some(ns) = &g.namespace {
        metadata.insert("namespace".into(), Value::String(ns.clone()));
    }
    if !options.labels.is_empty() {
        metadata.insert(
            "labels".into(),
            Value::Object(pairs_to_map(&options.labels)),
        );
    }
    if !options.annotations.is_empty() {
        metadata.insert(
            "annotations".into(),
            Value::Object(pairs_to_map(&options.annotations)),
        );
    }
    let mut value = json!({
        "apiVersion": "v1",
        "kind": if secret { "Secret" } else { "ConfigMap" },
        "metadata": metadata,
    });
    let object = value.as_object_mut().expect("literal object");
    if !data.is_empty() || binary.is_empty() {
        object.insert("data".into(), Value::Object(data));
    }
    if !binary.is_empty() {
        object.insert("binaryData".into(), Value::Object(binary));
    }
    if secret {
        object.insert(
            "type".into(),
            Value::String(g.type_.clone().unwrap_or_else(|| "Opaque".into())),
        );
    }
    if options.immutable == Some(true) {
        object.insert("immutable".into(), Value::Bool(true));
    }
    let mut r = Resource::new(
        value,
        Origin {
            file: ctx.file.clone(),
            document: 0,
            line: at,
        },
    );
    r.needs_hash = options.disable_name_suffix_hash != Some(true);
    Ok(r)
}

/// Base64 as kustomize writes generated data: from 70 characters on, broken into lines of 70,
/// each ending with a newline.
fn wrapped_base64(bytes: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    if encoded.len() < 70 {
        return encoded;
    }
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 70 + 1);
    for chunk in encoded.as_bytes().chunks(70) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Adds a generated object, or merges it into / replaces the one it names (`behavior`).
fn place(
    ctx: &Ctx,
    g: &Generator,
    generated: Resource,
    resources: &mut Vec<Resource>,
    at: usize,
) -> Result<(), Error> {
    let invalid = |message: String| Error::Invalid {
        file: ctx.file.clone(),
        line: at,
        message,
    };
    let behavior = g.behavior.as_deref().unwrap_or("create");
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.kind() == generated.kind()
                && r.all_names().any(|(n, ns)| {
                    n == generated.name()
                        && (g.namespace.is_none() || ns == generated.effective_namespace())
                })
        })
        .map(|(i, _)| i)
        .collect();
    match behavior {
        "create" => {
            if !matches.is_empty() {
                return Err(invalid(format!(
                    "{}: already exists; use behavior merge or replace",
                    generated.id()
                )));
            }
            resources.push(generated);
        }
        "merge" | "replace" => {
            let [i] = matches[..] else {
                return Err(invalid(format!(
                    "{}: behavior {behavior} needs exactly one existing object to act on, found {}",
                    generated.id(),
                    matches.len()
                )));
            };
            let existing = &mut resources[i];
            let target = existing.value.as_object_mut();
            let source = generated.value.as_object();
            if let (Some(target), Some(source)) = (target, source) {
                for field in ["data", "binaryData"] {
                    let new = source
                        .get(field)
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    if behavior == "replace" {
                        if new.is_empty() {
                            target.remove(field);
                        } else {
                            target.insert(field.into(), Value::Object(new));
                        }
                    } else if !new.is_empty() {
                        let entry = target
                            .entry(field)
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Some(map) = entry.as_object_mut() {
                            map.extend(new);
                        }
                    }
                }
                for field in ["labels", "annotations"] {
                    if let Some(new) = source["metadata"].get(field).and_then(Value::as_object) {
                        let meta = target
                            .entry("metadata")
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Some(meta) = meta.as_object_mut() {
                            let entry = meta
                                .entry(field)
                                .or_insert_with(|| Value::Object(Map::new()));
                            if let Some(map) = entry.as_object_mut() {
                                map.extend(new.clone());
                            }
                        }
                    }
                }
            }
            existing.needs_hash = generated.needs_hash;
        }
        other => {
            return Err(invalid(format!(
                "{}: unknown behavior {other} (expected create, merge or replace)",
                g.name
            )));
        }
    }
    Ok(())
}

/// Appends the content hash to the name of every generated object.
pub(crate) fn add_hash_suffixes(resources: &mut [Resource]) {
    for r in resources.iter_mut().filter(|r| r.needs_hash) {
        let hash = content_hash(&r.value);
        r.store_previous();
        let name = format!("{}-{hash}", r.name());
        r.set_meta("name", &name);
    }
}

/// kustomize's hash of a ConfigMap or Secret: SHA-256 of a Go-encoded summary, its first ten
/// hex digits with the vowel-like ones swapped for consonants.
pub(crate) fn content_hash(value: &Value) -> String {
    let field = |name: &str| value.get(name).filter(|v| v.is_object()).cloned();
    let kind = value["kind"].as_str().unwrap_or("");
    // kustomize looks the name up with a path it cannot find, so the name is always empty.
    let mut summary = Map::new();
    summary.insert("kind".into(), Value::String(kind.into()));
    summary.insert("name".into(), Value::String(String::new()));
    summary.insert(
        "data".into(),
        field("data").unwrap_or(Value::String(String::new())),
    );
    if kind == "Secret" {
        summary.insert(
            "type".into(),
            value
                .get("type")
                .cloned()
                .unwrap_or(Value::String(String::new())),
        );
        if let Some(s) = field("stringData") {
            summary.insert("stringData".into(), s);
        }
    } else if let Some(b) = field("binaryData") {
        summary.insert("binaryData".into(), b);
    }
    let mut encoded = String::new();
    go_json(&Value::Object(summary), &mut encoded);
    let hex = format!("{:x}", sha2::Sha256::digest(encoded.as_bytes()));
    hex.chars()
        .take(10)
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            c => c,
        })
        .collect()
}

/// Go's `json.Marshal`: sorted keys, HTML-safe escaping.
fn go_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(k, out);
                out.push(':');
                go_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json(item, out);
            }
            out.push(']');
        }
        Value::String(s) => go_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: Value, expected: &str) {
        assert_eq!(content_hash(&value), expected, "{value}");
    }

    #[test]
    fn hashes_match_kustomize() {
        check(
            json!({"kind": "ConfigMap", "metadata": {"name": "web-config"}, "data": {"GREETING": "hello", "COLOR": "blue"}}),
            "cdgdb4mkg6",
        );
        check(
            json!({"kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": "web-tls"}, "data": {"tls.crt": "bm90LWEtcmVhbC1jZXJ0aWZpY2F0ZQo="}}),
            "c4fhhf8ddg",
        );
    }

    #[test]
    fn long_base64_is_broken_into_lines_of_seventy() {
        assert_eq!(wrapped_base64(b"short"), "c2hvcnQ=");
        let long = wrapped_base64(&[b'x'; 60]);
        let lines: Vec<&str> = long.split_terminator('\n').collect();
        assert_eq!(
            lines.iter().map(|l| l.len()).collect::<Vec<_>>(),
            vec![70, 10]
        );
        assert!(long.ends_with('\n'));
    }

    #[test]
    fn literal_values_lose_one_pair_of_quotes() {
        assert_eq!(unquote("\"a b\""), "a b");
        assert_eq!(unquote("'x'"), "x");
        assert_eq!(unquote("\"x"), "\"x");
    }
}
