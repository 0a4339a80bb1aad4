//! `patches`, `patchesStrategicMerge` and `patchesJson6902`: choosing targets and applying
//! strategic merge and JSON 6902 patches.

use super::kustomization::{PatchOptions, Selector};
use super::{Ctx, Error, Resource};
use crate::source::Source;
use crate::yaml::{self, Dialect};
use apimachinery::registry::GroupVersionKind;
use apimachinery::selector::LabelSelector;
use serde_json::Value;
use std::collections::BTreeMap;

/// Where a patch was written, for errors: the item of a kustomization's list.
struct At<'a> {
    key: &'a str,
    index: usize,
}

impl At<'_> {
    fn line(&self, ctx: &Ctx) -> usize {
        super::locate_item(&ctx.text, self.key, self.index)
    }
}

/// `patchesStrategicMerge`: files (or inline documents) of patches that name their targets.
pub(crate) fn strategic_merge_files(
    source: &dyn Source,
    ctx: &Ctx,
    resources: &mut Vec<Resource>,
) -> Result<(), Error> {
    for (index, entry) in ctx.k.patches_strategic_merge.iter().enumerate() {
        let at = At {
            key: "patchesStrategicMerge",
            index,
        };
        let (file, text) = if entry.contains('\n') {
            (ctx.file.clone(), entry.clone())
        } else {
            ctx.read(source, at.key, entry)?
        };
        for doc in yaml::parse_documents(&file, &text, Dialect::Kustomize)? {
            apply_smp_by_id(ctx, &at, resources, &doc.value, &PatchOptions::default())?;
        }
    }
    Ok(())
}

/// The text of a patch given either by `path` or inline as `patch` (exactly one), with the file
/// it comes from.
fn patch_text(
    source: &dyn Source,
    ctx: &Ctx,
    at: &At,
    path: Option<&str>,
    patch: Option<&str>,
) -> Result<(String, String), Error> {
    match (path, patch) {
        (Some(path), None) => ctx.read(source, at.key, path),
        (None, Some(text)) => Ok((ctx.file.clone(), text.to_string())),
        _ => Err(Error::Invalid {
            file: ctx.file.clone(),
            line: at.line(ctx),
            message: "a patch needs exactly one of path and patch".into(),
        }),
    }
}

/// `patches`: strategic merge or JSON 6902 patches, inline or in files, with optional targets.
pub(crate) fn patches(
    source: &dyn Source,
    ctx: &Ctx,
    resources: &mut Vec<Resource>,
) -> Result<(), Error> {
    for (index, p) in ctx.k.patches.iter().enumerate() {
        let at = At {
            key: "patches",
            index,
        };
        let (file, text) = patch_text(source, ctx, &at, p.path.as_deref(), p.patch.as_deref())?;
        let options = p.options.clone().unwrap_or_default();
        match parse_patch(&file, &text)? {
            Parsed::Json(ops) => {
                let Some(target) = &p.target else {
                    return Err(Error::Invalid {
                        file: ctx.file.clone(),
                        line: at.line(ctx),
                        message: "a JSON 6902 patch needs a target".into(),
                    });
                };
                apply_json(ctx, &at, resources, target, &ops, &file)?;
            }
            Parsed::Strategic(docs) => {
                match &p.target {
                    Some(target) => {
                        if docs.len() != 1 {
                            return Err(Error::Invalid {
                            file: ctx.file.clone(),
                            line: at.line(ctx),
                            message: "a patch with a target must hold exactly one strategic merge patch".into(),
                        });
                        }
                        let selected = select(ctx, &at, resources, target)?;
                        for i in selected {
                            apply_smp(ctx, &at, resources, i, &docs[0], &options)?;
                        }
                        resources.retain(|r| !is_deleted(&r.value));
                    }
                    None => {
                        for doc in &docs {
                            apply_smp_by_id(ctx, &at, resources, doc, &options)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// `patchesJson6902`: JSON patches with their targets.
pub(crate) fn json6902_entries(
    source: &dyn Source,
    ctx: &Ctx,
    resources: &mut [Resource],
) -> Result<(), Error> {
    for (index, p) in ctx.k.patches_json6902.iter().enumerate() {
        let at = At {
            key: "patchesJson6902",
            index,
        };
        let (file, text) = patch_text(source, ctx, &at, p.path.as_deref(), p.patch.as_deref())?;
        let ops = match parse_patch(&file, &text)? {
            Parsed::Json(ops) => ops,
            Parsed::Strategic(_) => {
                return Err(Error::Invalid {
                    file: ctx.file.clone(),
                    line: at.line(ctx),
                    message: "patchesJson6902 expects a list of JSON patch operations".into(),
                });
            }
        };
        apply_json(ctx, &at, resources, &p.target, &ops, &file)?;
    }
    Ok(())
}

enum Parsed {
    Json(Value),
    Strategic(Vec<Value>),
}

fn parse_patch(file: &str, text: &str) -> Result<Parsed, Error> {
    let docs = yaml::parse_documents(file, text, Dialect::Kustomize)?;
    if docs.len() == 1 && docs[0].value.is_array() {
        return Ok(Parsed::Json(docs[0].value.clone()));
    }
    Ok(Parsed::Strategic(
        docs.into_iter().map(|d| d.value).collect(),
    ))
}

fn gvk_of(value: &Value) -> GroupVersionKind {
    GroupVersionKind::from_api_version(
        value["apiVersion"].as_str().unwrap_or(""),
        value["kind"].as_str().unwrap_or(""),
    )
}

fn is_deleted(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

fn apply_smp_by_id(
    ctx: &Ctx,
    at: &At,
    resources: &mut Vec<Resource>,
    patch: &Value,
    options: &PatchOptions,
) -> Result<(), Error> {
    let gvk = gvk_of(patch);
    let name = patch
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ns = super::effective_namespace(
        &gvk.kind,
        patch
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let rg = gvk_of(&r.value);
            rg.group == gvk.group
                && rg.version == gvk.version
                && rg.kind == gvk.kind
                && r.all_names().any(|(n, rns)| n == name && rns == ns)
        })
        .map(|(i, _)| i)
        .collect();
    let target = format!("{}.{}.{}/{}.{}", gvk.kind, gvk.version, gvk.group, name, ns);
    match matches[..] {
        [] => Err(Error::NoTarget {
            file: ctx.file.clone(),
            line: at.line(ctx),
            target,
        }),
        [i] => {
            apply_smp(ctx, at, resources, i, patch, options)?;
            resources.retain(|r| !is_deleted(&r.value));
            Ok(())
        }
        _ => Err(Error::Invalid {
            file: ctx.file.clone(),
            line: at.line(ctx),
            message: format!("patch {target} matches several resources"),
        }),
    }
}

fn apply_smp(
    ctx: &Ctx,
    at: &At,
    resources: &mut [Resource],
    i: usize,
    patch: &Value,
    options: &PatchOptions,
) -> Result<(), Error> {
    let r = &mut resources[i];
    let (name, namespace, kind) = (
        r.name().to_string(),
        r.namespace().to_string(),
        r.kind().to_string(),
    );
    if options.allow_name_change || options.allow_kind_change {
        r.store_previous();
    }
    let gvk = gvk_of(&r.value);
    let patched = match &ctx.openapi {
        Some(schema) => schema.apply(&r.value, patch, &gvk),
        None => apimachinery::patch::strategic::apply(&r.value, patch, &gvk),
    }
    .map_err(|e| Error::Invalid {
        file: ctx.file.clone(),
        line: at.line(ctx),
        message: format!("{}: {e}", r.id()),
    })?;
    r.value = patched;
    merged_order(&mut r.value, patch);
    if is_deleted(&r.value) {
        return Ok(());
    }
    if !options.allow_kind_change
        && let Some(o) = r.value.as_object_mut()
    {
        o.insert("kind".into(), Value::String(kind));
    }
    if !options.allow_name_change {
        r.set_meta("name", &name);
    }
    if namespace.is_empty() {
        if let Some(meta) = r.value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("namespace");
        }
    } else {
        r.set_meta("namespace", &namespace);
    }
    Ok(())
}

/// Puts merged list elements in kustomize's order: the elements the patch named first, in
/// the patch's order, then the object's other elements in their order (apimachinery keeps the
/// object's order, as the API server does). A merged element is the patch's when it holds
/// everything that patch element says.
fn merged_order(merged: &mut Value, patch: &Value) {
    match (merged, patch) {
        (Value::Object(m), Value::Object(p)) => {
            for (key, pv) in p {
                if let Some(mv) = m.get_mut(key) {
                    merged_order(mv, pv);
                }
            }
        }
        (Value::Array(items), Value::Array(patch_items))
            if !patch_items.is_empty() && patch_items.iter().all(Value::is_object) =>
        {
            let mut used = vec![false; items.len()];
            let mut order = Vec::with_capacity(items.len());
            for pe in patch_items {
                if pe.get("$patch").is_some() {
                    continue;
                }
                if let Some(i) = (0..items.len()).find(|&i| !used[i] && holds(&items[i], pe)) {
                    used[i] = true;
                    merged_order(&mut items[i], pe);
                    order.push(i);
                }
            }
            order.extend((0..items.len()).filter(|&i| !used[i]));
            let mut old: Vec<Option<Value>> = std::mem::take(items).into_iter().map(Some).collect();
            items.extend(order.into_iter().filter_map(|i| old[i].take()));
        }
        _ => {}
    }
}

/// Whether `merged` holds everything `patch` sets (directives and deletions aside).
fn holds(merged: &Value, patch: &Value) -> bool {
    match (merged, patch) {
        (Value::Object(m), Value::Object(p)) => p.iter().all(|(k, pv)| {
            k.starts_with('$') || pv.is_null() || m.get(k).is_some_and(|mv| holds(mv, pv))
        }),
        (Value::Array(m), Value::Array(p)) => p
            .iter()
            .filter(|pv| pv.get("$patch").is_none())
            .all(|pv| m.iter().any(|mv| holds(mv, pv))),
        (m, p) => m == p,
    }
}

fn apply_json(
    ctx: &Ctx,
    at: &At,
    resources: &mut [Resource],
    target: &Selector,
    ops: &Value,
    file: &str,
) -> Result<(), Error> {
    for i in select(ctx, at, resources, target)? {
        let r = &mut resources[i];
        r.store_previous();
        r.value = apimachinery::patch::json_patch(&r.value, ops).map_err(|e| Error::Invalid {
            file: file.to_string(),
            line: at.line(ctx),
            message: format!("{}: {e}", r.id()),
        })?;
    }
    Ok(())
}

fn anchored(pattern: &str) -> Option<regex::Regex> {
    if pattern.is_empty() {
        return None;
    }
    regex::Regex::new(&format!("^(?:{pattern})$")).ok()
}

pub(crate) fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The indices of the resources a target selects; selecting nothing is an error.
fn select(
    ctx: &Ctx,
    at: &At,
    resources: &[Resource],
    target: &Selector,
) -> Result<Vec<usize>, Error> {
    let invalid = |message: String| Error::Invalid {
        file: ctx.file.clone(),
        line: at.line(ctx),
        message,
    };
    let matcher = |p: &str| -> Result<Option<regex::Regex>, Error> {
        match anchored(p) {
            None if !p.is_empty() => Err(invalid(format!("invalid target pattern {p:?}"))),
            m => Ok(m),
        }
    };
    let (group, version, kind) = (
        matcher(&target.group)?,
        matcher(&target.version)?,
        matcher(&target.kind)?,
    );
    let (name, namespace) = (matcher(&target.name)?, matcher(&target.namespace)?);
    let parse = |s: &str| -> Result<Option<LabelSelector>, Error> {
        if s.is_empty() {
            return Ok(None);
        }
        LabelSelector::parse(s)
            .map(Some)
            .map_err(|e| invalid(format!("target selector {s:?}: {e}")))
    };
    let labels = parse(&target.label_selector)?;
    let annotations = parse(&target.annotation_selector)?;
    let is = |re: &Option<regex::Regex>, s: &str| re.as_ref().is_none_or(|re| re.is_match(s));
    let selected: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let (original_name, original_ns) = r.original();
            let gvk = gvk_of(&r.value);
            (is(&namespace, &original_ns) || is(&namespace, &r.effective_namespace()))
                && (is(&name, &original_name) || is(&name, r.name()))
                && is(&group, &gvk.group)
                && is(&version, &gvk.version)
                && is(&kind, &gvk.kind)
                && labels
                    .as_ref()
                    .is_none_or(|s| s.matches(&string_map(r.value.pointer("/metadata/labels"))))
                && annotations.as_ref().is_none_or(|s| {
                    s.matches(&string_map(r.value.pointer("/metadata/annotations")))
                })
        })
        .map(|(i, _)| i)
        .collect();
    if selected.is_empty() {
        return Err(Error::NoTarget {
            file: ctx.file.clone(),
            line: at.line(ctx),
            target: describe(target),
        });
    }
    Ok(selected)
}

fn describe(t: &Selector) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("group", &t.group),
        ("version", &t.version),
        ("kind", &t.kind),
        ("name", &t.name),
        ("namespace", &t.namespace),
        ("labelSelector", &t.label_selector),
        ("annotationSelector", &t.annotation_selector),
    ] {
        if !v.is_empty() {
            parts.push(format!("{k}={v}"));
        }
    }
    parts.join(" ")
}
