//! Name references: after prefixes, suffixes, namespaces and hashes have renamed objects, the
//! fields that refer to them by their old names are updated, choosing the referred object the
//! way kustomize does (same namespace, same prefixes and suffixes).

use super::Resource;
use super::fields::{self, NameReference, name_references};
use serde_json::Value;
use std::collections::HashMap;

/// What the referral candidates looked like once renaming was over.
struct Candidate {
    kind: String,
    group: String,
    previous: Vec<(String, String)>,
    name: String,
    namespace: String,
    effective_namespace: String,
    cluster_scoped: bool,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

/// Whether one list ends with the other (kustomize's `SameEndingSubSlice`).
fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return long.is_empty();
    }
    long[long.len() - short.len()..] == *short
}

/// What choosing a referral needs to know about the referring object.
struct Referrer {
    id: String,
    cluster_scoped: bool,
    effective_namespace: String,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

impl Referrer {
    fn of(r: &Resource) -> Self {
        Referrer {
            id: r.id(),
            cluster_scoped: r.is_cluster_scoped(),
            effective_namespace: r.effective_namespace(),
            prefixes: r.prefixes.clone(),
            suffixes: r.suffixes.clone(),
        }
    }
}

/// Candidates by each name they have had.
type ByName<'c> = HashMap<&'c str, Vec<&'c Candidate>>;

fn affixes_equal(c: &Candidate, referrer: &Referrer, allow_empty: bool) -> bool {
    let prefixes = (allow_empty && (c.prefixes.is_empty() || referrer.prefixes.is_empty()))
        || same_ending(&c.prefixes, &referrer.prefixes);
    let suffixes = (allow_empty && (c.suffixes.is_empty() || referrer.suffixes.is_empty()))
        || same_ending(&c.suffixes, &referrer.suffixes);
    prefixes && suffixes
}

/// Picks the object a reference named `old` means, among `candidates`.
fn choose<'c>(
    old: &str,
    candidates: Vec<&'c Candidate>,
    referrer: &Referrer,
    role_kind: Option<&str>,
    check_namespace: bool,
) -> Result<Option<&'c Candidate>, String> {
    let referrer_cluster = referrer.cluster_scoped;
    let referrer_ns = &referrer.effective_namespace;
    let mut list: Vec<&Candidate> = candidates
        .into_iter()
        .filter(|c| c.previous.iter().any(|(n, _)| n == old))
        .filter(|c| role_kind.is_none_or(|k| c.kind == k))
        .filter(|c| {
            !check_namespace
                || referrer_cluster
                || c.cluster_scoped
                || c.kind == "ServiceAccount"
                || &c.effective_namespace == referrer_ns
        })
        .collect();
    if list.len() == 1 {
        return Ok(list.pop());
    }
    list.retain(|c| affixes_equal(c, referrer, true));
    if list.len() > 1 {
        list.retain(|c| affixes_equal(c, referrer, false));
    }
    match list.len() {
        0 => Ok(None),
        1 => Ok(list.pop()),
        _ if list
            .iter()
            .all(|c| c.name == list[0].name && c.namespace == list[0].namespace) =>
        {
            Ok(Some(list[0]))
        }
        _ => Err(format!(
            "{}: reference {old:?} matches several objects: {}",
            referrer.id,
            list.iter()
                .map(|c| format!("{}/{}.{}", c.kind, c.name, c.namespace))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Updates every reference to a renamed object.
pub(crate) fn fix(resources: &mut [Resource], extra: &[NameReference]) -> Result<(), String> {
    let candidates: Vec<Candidate> = resources
        .iter()
        .filter(|r| !r.previous.is_empty())
        .map(|r| Candidate {
            kind: r.kind().into(),
            group: r.group().into(),
            previous: r.previous.clone(),
            name: r.name().into(),
            namespace: r.namespace().into(),
            effective_namespace: r.effective_namespace(),
            cluster_scoped: r.is_cluster_scoped(),
            prefixes: r.prefixes.clone(),
            suffixes: r.suffixes.clone(),
        })
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    // Configured references select as kustomize's do: an empty group matches every group.
    let all = name_references()
        .iter()
        .map(|r| (r, false))
        .chain(extra.iter().map(|r| (r, true)));
    for (reference, configured) in all {
        let of_kind: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| {
                c.kind == reference.kind
                    && (c.group == reference.group || (configured && reference.group.is_empty()))
            })
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let mut by_name = ByName::new();
        for c in &of_kind {
            let mut names: Vec<&str> = c.previous.iter().map(|(n, _)| n.as_str()).collect();
            names.dedup();
            for n in names {
                by_name.entry(n).or_default().push(c);
            }
        }
        for r in resources.iter_mut() {
            let mut referrer = None;
            for spec in &reference.referrers {
                if !spec.selects(r.api_version(), r.kind()) {
                    continue;
                }
                let snapshot = referrer.get_or_insert_with(|| Referrer::of(r));
                let role_kind = spec
                    .path
                    .ends_with("roleRef/name")
                    .then(|| r.str_at(&["roleRef", "kind"]).to_string());
                let mut failure = None;
                fields::visit(
                    &mut r.value,
                    &fields::segments(&spec.path),
                    false,
                    &mut |node| {
                        if failure.is_some() {
                            return;
                        }
                        if let Err(e) = update(node, &by_name, snapshot, role_kind.as_deref()) {
                            failure = Some(e);
                        }
                    },
                );
                if let Some(e) = failure {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

fn update(
    node: &mut Value,
    by_name: &ByName,
    referrer: &Referrer,
    role_kind: Option<&str>,
) -> Result<(), String> {
    let named = |name: &str| by_name.get(name).cloned().unwrap_or_default();
    match node {
        Value::String(old) => {
            if let Some(c) = choose(old, named(old), referrer, role_kind, true)? {
                *old = c.name.clone();
            }
        }
        Value::Array(items) => {
            for item in items {
                update(item, by_name, referrer, role_kind)?;
            }
        }
        Value::Object(map) => {
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k != "ServiceAccount")
                && map.contains_key("apiGroup")
            {
                return Ok(());
            }
            let Some(old) = map.get("name").and_then(Value::as_str).map(str::to_string) else {
                return Ok(());
            };
            let candidates = named(&old);
            let in_namespace: Vec<&Candidate> = match map.get("namespace").and_then(Value::as_str) {
                None => candidates,
                Some(ns) => {
                    let by_original: Vec<&Candidate> = candidates
                        .iter()
                        .copied()
                        .filter(|c| c.previous.first().is_some_and(|(_, o)| o == ns))
                        .collect();
                    if by_original.is_empty() {
                        candidates
                            .iter()
                            .copied()
                            .filter(|c| c.effective_namespace == ns)
                            .collect()
                    } else {
                        by_original
                    }
                }
            };
            if let Some(c) = choose(&old, in_namespace, referrer, role_kind, true)? {
                map.insert("name".into(), Value::String(c.name.clone()));
                if !c.namespace.is_empty() {
                    map.insert("namespace".into(), Value::String(c.namespace.clone()));
                }
            }
        }
        _ => {}
    }
    Ok(())
}
