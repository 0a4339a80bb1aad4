//! Strategic merge patch: Kubernetes' JSON merge patch that merges lists by key.
//!
//! A strategic merge patch is a JSON merge patch (maps merge, `null` deletes) in which some
//! lists merge instead of being replaced: lists of objects by a *merge key* (`containers` by
//! `name`), lists of primitives as ordered sets (`finalizers`). Which lists merge is patch
//! metadata of the built-in kinds (the `patchStrategy` and `patchMergeKey` tags of the k8s.io/api
//! Go types), kept here as a small schema tree per kind (the `patch` column of `crate::builtin::KINDS`). Directives steer the merge:
//!
//! - `"$patch": "replace"` in a map replaces the map; `"$patch": "delete"` empties it.
//! - In a merging list, `{"name": "x", "$patch": "delete"}` removes the element `x` and
//!   `{"$patch": "replace"}` makes the patch's elements replace the whole list.
//! - `"$patch": "merge"` asks for the default merge. Kubernetes rejects it; it is accepted here
//!   as a no-op because it can only mean what it says.
//! - `"$deleteFromPrimitiveList/<field>": [...]` removes values from a list of primitives.
//! - `"$setElementOrder/<field>": [...]` orders a merging list (objects by their merge key).
//! - `"$retainKeys": [...]` clears the fields of the original map not listed.
//!
//! The merged list order, the placement of new elements (before the untouched server-side
//! elements, as kubectl shows) and the error cases follow k8s.io/apimachinery's `strategicpatch`
//! package; expectations in the tests were checked against `kubectl patch --local`. Directives
//! never reach the result, and neither do `null`s inside values the patch adds. Where
//! Kubernetes' result depends on Go's map iteration order (a patch that both adds and deletes a
//! value of a primitive list), the deletion wins here.
//!
//! [`three_way`] computes the patch `kubectl apply` sends: the deletions from the last-applied
//! configuration plus the changes from the live object to the new configuration.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::PatchError;
use crate::registry::GroupVersionKind;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// How deeply a patch may nest; deeper ones are refused rather than risking the stack (the merge
/// recurses once per level, and must fit in a 2 MiB thread stack even in debug builds).
const MAX_DEPTH: usize = 256;

/// The patch metadata of one field, from its `patchStrategy` and `patchMergeKey` tags.
///
/// Fields not listed in a table are plain: maps merge recursively, lists are replaced.
#[derive(Clone, Copy, Debug)]
pub enum Field {
    /// A struct with listed fields below it; `retain_keys` is `patchStrategy:"retainKeys"`, which
    /// makes [`three_way`] send `$retainKeys` so that fields left out are cleared.
    Object {
        /// The fields with patch metadata.
        fields: Fields,
        /// Whether the struct is patched with `retainKeys`.
        retain_keys: bool,
    },
    /// A list of objects merged by a key (`patchStrategy:"merge" patchMergeKey:"<key>"`), whose
    /// elements have the `item` fields; `retain_keys` is the `merge,retainKeys` strategy, which
    /// applies `retainKeys` to each element.
    Keyed {
        /// The merge key.
        key: &'static str,
        /// The fields of the elements with patch metadata.
        item: Fields,
        /// Whether each element is patched with `retainKeys`.
        retain_keys: bool,
    },
    /// A list of primitives merged as an ordered set (`patchStrategy:"merge"`, no key).
    Set,
}

/// The fields of a struct that have patch metadata, or lead to fields that have.
pub type Fields = &'static [(&'static str, Field)];

const fn object(fields: Fields) -> Field {
    Field::Object {
        fields,
        retain_keys: false,
    }
}

const fn keyed(key: &'static str, item: Fields) -> Field {
    Field::Keyed {
        key,
        item,
        retain_keys: false,
    }
}

/// A list merged by `key` whose elements are unions patched with `retainKeys` (volumes, whose
/// source is one of many members).
const fn keyed_retaining(key: &'static str) -> Field {
    Field::Keyed {
        key,
        item: &[],
        retain_keys: true,
    }
}

/// A struct patched with `retainKeys`: a union such as a deployment strategy, where setting one
/// member clears the others.
const UNION: Field = Field::Object {
    fields: &[],
    retain_keys: true,
};

/// ObjectMeta.
const OBJECT_META: Fields = &[
    ("finalizers", Field::Set),
    ("ownerReferences", keyed("uid", &[])),
];
const METADATA: (&str, Field) = ("metadata", object(OBJECT_META));

/// Container and EphemeralContainer.
const CONTAINER: Fields = &[
    ("ports", keyed("containerPort", &[])),
    ("env", keyed("name", &[])),
    ("volumeMounts", keyed("mountPath", &[])),
    ("volumeDevices", keyed("devicePath", &[])),
];

const POD_SPEC: Fields = &[
    ("containers", keyed("name", CONTAINER)),
    ("initContainers", keyed("name", CONTAINER)),
    ("ephemeralContainers", keyed("name", CONTAINER)),
    ("volumes", keyed_retaining("name")),
    ("imagePullSecrets", keyed("name", &[])),
    ("hostAliases", keyed("ip", &[])),
    ("topologySpreadConstraints", keyed("topologyKey", &[])),
    ("schedulingGates", keyed("name", &[])),
    ("resourceClaims", keyed_retaining("name")),
];

const CONDITIONS: (&str, Field) = ("conditions", keyed("type", &[]));

const POD_STATUS: Fields = &[
    CONDITIONS,
    ("hostIPs", keyed("ip", &[])),
    ("podIPs", keyed("ip", &[])),
    ("resourceClaimStatuses", keyed_retaining("name")),
];

/// A `status` whose only patch metadata is its `conditions`, merged by `type`.
const STATUS_CONDITIONS: (&str, Field) = ("status", object(&[CONDITIONS]));

/// PodTemplateSpec.
const POD_TEMPLATE: (&str, Field) = ("template", object(&[METADATA, ("spec", object(POD_SPEC))]));

/// Kinds with a pod template at `spec.template` and conditions in their status.
pub(crate) const WORKLOAD: Fields = &[
    METADATA,
    ("spec", object(&[POD_TEMPLATE])),
    STATUS_CONDITIONS,
];

pub(crate) const DEPLOYMENT: Fields = &[
    METADATA,
    ("spec", object(&[POD_TEMPLATE, ("strategy", UNION)])),
    STATUS_CONDITIONS,
];

pub(crate) const CRON_JOB: Fields = &[
    METADATA,
    (
        "spec",
        object(&[(
            "jobTemplate",
            object(&[METADATA, ("spec", object(&[POD_TEMPLATE]))]),
        )]),
    ),
];

pub(crate) const WEBHOOK_CONFIGURATION: Fields = &[
    METADATA,
    (
        "webhooks",
        keyed("name", &[("matchConditions", keyed("name", &[]))]),
    ),
];

/// Kinds whose only patch metadata is their ObjectMeta's.
pub(crate) const PLAIN: Fields = &[METADATA];

/// Pod.
pub(crate) const POD: Fields = &[
    METADATA,
    ("spec", object(POD_SPEC)),
    ("status", object(POD_STATUS)),
];

/// PodTemplate.
pub(crate) const POD_TEMPLATE_KIND: Fields = &[METADATA, POD_TEMPLATE];

/// Service.
pub(crate) const SERVICE: Fields = &[
    METADATA,
    ("spec", object(&[("ports", keyed("port", &[]))])),
    STATUS_CONDITIONS,
];

/// Node.
pub(crate) const NODE: Fields = &[
    METADATA,
    ("spec", object(&[("podCIDRs", Field::Set)])),
    (
        "status",
        object(&[CONDITIONS, ("addresses", keyed("type", &[]))]),
    ),
];

/// Kinds whose status has conditions merged by `type` and nothing else with patch metadata.
pub(crate) const CONDITIONED: Fields = &[METADATA, STATUS_CONDITIONS];

/// ServiceAccount.
pub(crate) const SERVICE_ACCOUNT: Fields = &[METADATA, ("secrets", keyed("name", &[]))];

/// ComponentStatus: top-level conditions.
pub(crate) const COMPONENT_STATUS: Fields = &[METADATA, CONDITIONS];

/// CSINode: drivers merged by name.
pub(crate) const CSI_NODE: Fields = &[
    METADATA,
    ("spec", object(&[("drivers", keyed("name", &[]))])),
];

pub(crate) fn kind_fields(gvk: &GroupVersionKind) -> Option<Fields> {
    crate::builtin::find(&gvk.group, &gvk.version, &gvk.kind).map(|k| k.patch)
}

/// Whether strategic merge patch knows the patch metadata of a kind.
///
/// The API server answers 415 Unsupported Media Type to a strategic merge patch of any other
/// kind, as Kubernetes does for custom resources.
pub fn is_known_kind(gvk: &GroupVersionKind) -> bool {
    kind_fields(gvk).is_some()
}

/// Applies a strategic merge patch to a copy of `original`, an object of kind `gvk`.
///
/// For kinds without patch metadata ([`is_known_kind`] is false) every list is replaced, as in a
/// JSON merge patch, while `null`s and map directives still work.
pub fn apply(original: &Value, patch: &Value, gvk: &GroupVersionKind) -> Result<Value, PatchError> {
    let Some(original) = original.as_object() else {
        return Err(PatchError::Invalid(
            "the patched object is not a JSON object".into(),
        ));
    };
    let Some(patch) = patch.as_object() else {
        return Err(PatchError::Invalid(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    check_depth(patch)?;
    let fields = kind_fields(gvk).unwrap_or(&[]);
    merge_map(original.clone(), patch, fields, "").map(Value::Object)
}

fn invalid(path: &str, message: impl std::fmt::Display) -> PatchError {
    if path.is_empty() {
        PatchError::Invalid(message.to_string())
    } else {
        PatchError::Invalid(format!("{path}: {message}"))
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn check_depth(patch: &Map<String, Value>) -> Result<(), PatchError> {
    let mut stack: Vec<(&Value, usize)> = patch.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(PatchError::Invalid(format!(
                "the patch nests deeper than {MAX_DEPTH} levels"
            )));
        }
        match value {
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn lookup(fields: Fields, name: &str) -> Option<Field> {
    fields.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The fields below a map-valued field.
fn fields_of(field: Option<Field>) -> Fields {
    match field {
        Some(Field::Object { fields, .. }) => fields,
        _ => &[],
    }
}

fn is_directive(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
        || key.starts_with(SET_ELEMENT_ORDER)
}

/// A hashable identity of a JSON value, with numbers compared by value as Go compares them.
fn identity(value: &Value) -> String {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) => format!("n{f}"),
            None => format!("n{n}"),
        },
        Value::String(s) => format!("s{s}"),
        other => format!("j{other}"),
    }
}

/// What identifies a list element when lists merge: its merge key, or itself for primitives.
fn element_identity(value: &Value, key: Option<&str>) -> Option<String> {
    match key {
        Some(key) => value.get(key).map(identity),
        None => Some(identity(value)),
    }
}

/// Merges `patch` into `original`, both maps whose fields are described by `fields`.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    fields: Fields,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(PATCH) {
        match directive.as_str() {
            Some("replace") => {
                let mut rest = patch.clone();
                rest.shift_remove(PATCH);
                return merge_map(Map::new(), &rest, fields, path);
            }
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => return Err(invalid(path, format!("unknown patch type: {directive}"))),
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, patch, retain, path)?;
    }
    let mut ordered = HashSet::new();
    for (key, order) in patch {
        if let Some(name) = key.strip_prefix(SET_ELEMENT_ORDER)
            && set_element_order(&mut original, patch, fields, name, order, path)?
        {
            ordered.insert(name);
        }
    }
    for (key, value) in patch {
        if is_directive(key) || ordered.contains(key.as_str()) {
            continue;
        }
        let key_path = child(path, key);
        let field = lookup(fields, key);
        match (original.get_mut(key), value) {
            (_, Value::Null) => {
                original.shift_remove(key);
            }
            (Some(Value::Object(have)), Value::Object(want)) => {
                let merged = merge_map(std::mem::take(have), want, fields_of(field), &key_path)?;
                *have = merged;
            }
            (Some(Value::Array(have)), Value::Array(want)) => {
                let merged = merge_list(std::mem::take(have), want, field, &key_path)?;
                *have = merged;
            }
            (None, Value::Object(want)) if want.get(PATCH) == Some(&Value::from("delete")) => {}
            _ => {
                let added = clean(value, field, &key_path)?;
                original.insert(key.clone(), added);
            }
        }
    }
    for (key, values) in patch {
        if let Some(name) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_primitive_list(&mut original, name, values, &child(path, key))?;
        }
    }
    Ok(original)
}

/// A value the patch adds where the original has nothing to merge with: the same value with
/// its directives applied and its `null`s dropped.
fn clean(value: &Value, field: Option<Field>, path: &str) -> Result<Value, PatchError> {
    match value {
        Value::Object(map) => merge_map(Map::new(), map, fields_of(field), path).map(Value::Object),
        Value::Array(items) => clean_list(items, field, path).map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// A list the patch adds or replaces, cleaned element by element; in a merging list of
/// objects, elements that are only directives are dropped.
fn clean_list(items: &[Value], field: Option<Field>, path: &str) -> Result<Vec<Value>, PatchError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match (field, classify(item, None, &item_path)?) {
            (Some(Field::Keyed { item: fields, .. }), Element::Patch(map)) => {
                out.push(Value::Object(merge_map(
                    Map::new(),
                    &map,
                    fields,
                    &item_path,
                )?));
            }
            (Some(Field::Keyed { .. }), Element::Delete(_) | Element::Marker) => {}
            _ => out.push(clean(item, None, &item_path)?),
        }
    }
    Ok(out)
}

/// An element of a merging list in a patch, by its `$patch` directive.
enum Element<'a> {
    /// An element to merge; `$patch: merge` is dropped from it.
    Patch(Cow<'a, Map<String, Value>>),
    /// `{"<key>": <value>, "$patch": "delete"}`: delete the element with this merge key value
    /// (`Null` when no key is asked for).
    Delete(&'a Value),
    /// `{"$patch": "replace"}` or a bare `{"$patch": "merge"}`, which stand for no element.
    Marker,
}

/// Reads an element of a merging list; `key` is the merge key deletions must name.
fn classify<'a>(item: &'a Value, key: Option<&str>, path: &str) -> Result<Element<'a>, PatchError> {
    let Some(map) = item.as_object() else {
        return Ok(Element::Marker);
    };
    let Some(directive) = map.get(PATCH) else {
        return Ok(Element::Patch(Cow::Borrowed(map)));
    };
    match directive.as_str() {
        Some("delete") => match key {
            None => Ok(Element::Delete(&Value::Null)),
            Some(key) => match map.get(key) {
                Some(value) => Ok(Element::Delete(value)),
                None => Err(invalid(path, format!("missing merge key \"{key}\""))),
            },
        },
        Some("replace") => Ok(Element::Marker),
        Some("merge") => {
            let mut rest = map.clone();
            rest.shift_remove(PATCH);
            Ok(if rest.is_empty() {
                Element::Marker
            } else {
                Element::Patch(Cow::Owned(rest))
            })
        }
        _ => Err(invalid(path, format!("unknown patch type: {directive}"))),
    }
}

/// Merges two lists under a field's patch metadata.
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    field: Option<Field>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let keyed = match field {
        Some(Field::Keyed { key, item, .. }) => Some((key, item)),
        Some(Field::Set) => None,
        _ => return clean_list(patch, field, path),
    };
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if !element_kind(&original, patch, path)? {
        let mut seen = HashSet::new();
        let merged: Vec<Value> = original
            .iter()
            .chain(patch)
            .filter(|v| seen.insert(identity(v)))
            .cloned()
            .collect();
        return Ok(normalize_order(
            merged,
            patch.iter().map(identity),
            &original,
            None,
        ));
    }
    let Some((key, item)) = keyed else {
        return Err(invalid(
            path,
            "cannot merge a list of objects without a merge key",
        ));
    };
    let mut elements = Vec::new();
    let mut doomed = HashSet::new();
    let mut replace = false;
    for (i, element) in patch.iter().enumerate() {
        let element_path = format!("{path}[{i}]");
        match classify(element, Some(key), &element_path)? {
            Element::Patch(map) if !map.contains_key(key) => {
                return Err(invalid(
                    &element_path,
                    format!("missing merge key \"{key}\""),
                ));
            }
            Element::Patch(map) => elements.push((element_path, map)),
            Element::Delete(value) => {
                doomed.insert(identity(value));
            }
            Element::Marker => replace |= element.get(PATCH) == Some(&Value::from("replace")),
        }
    }
    if replace {
        return elements
            .iter()
            .map(|(p, map)| merge_map(Map::new(), map, item, p).map(Value::Object))
            .collect();
    }
    let original: Vec<Value> = original
        .into_iter()
        .filter(|o| element_identity(o, Some(key)).is_none_or(|id| !doomed.contains(&id)))
        .collect();
    let mut merged = original.clone();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, element) in merged.iter().enumerate() {
        if let Some(id) = element_identity(element, Some(key)) {
            index.entry(id).or_insert(i);
        }
    }
    for (element_path, map) in &elements {
        let id = identity(&map[key]);
        match index.get(&id) {
            Some(&i) => {
                let have = match std::mem::take(&mut merged[i]) {
                    Value::Object(have) => have,
                    _ => Map::new(),
                };
                merged[i] = Value::Object(merge_map(have, map, item, element_path)?);
            }
            None => {
                index.insert(id, merged.len());
                merged.push(Value::Object(merge_map(
                    Map::new(),
                    map,
                    item,
                    element_path,
                )?));
            }
        }
    }
    let order = elements.iter().map(|(_, map)| identity(&map[key]));
    Ok(normalize_order(merged, order, &original, Some(key)))
}

/// Whether the elements of two lists that merge are objects; errors when they mix JSON types
/// or nest lists, which Kubernetes refuses to merge.
fn element_kind(original: &[Value], patch: &[Value], path: &str) -> Result<bool, PatchError> {
    let kind = |v: &Value| std::mem::discriminant(v);
    if original.iter().chain(patch).any(Value::is_array) {
        return Err(invalid(path, "lists of lists cannot be merged"));
    }
    let mut all = original.iter().chain(patch);
    let Some(first) = all.next() else {
        return Ok(false);
    };
    if all.any(|v| kind(v) != kind(first)) {
        return Err(invalid(path, "list element types are not identical"));
    }
    Ok(first.is_object())
}

/// Orders a merged list as Kubernetes does. The elements named in `order` come in that order;
/// the others (only on the server) keep their order in `server`, and each of them stays before
/// the first ordered element that followed it on the server.
fn normalize_order(
    merged: Vec<Value>,
    order: impl IntoIterator<Item = String>,
    server: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let positions = |ids: &mut dyn Iterator<Item = String>| {
        let mut map: HashMap<String, usize> = HashMap::new();
        for (i, id) in ids.enumerate() {
            map.entry(id).or_insert(i);
        }
        map
    };
    let order_pos = positions(&mut order.into_iter());
    let server_pos = positions(&mut server.iter().filter_map(|v| element_identity(v, key)));
    let position = |map: &HashMap<String, usize>, v: &Value| {
        element_identity(v, key).and_then(|id| map.get(&id).copied())
    };
    let (mut ordered, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| position(&order_pos, v).is_some());
    ordered.sort_by_key(|v| position(&order_pos, v));
    server_only.sort_by_key(|v| position(&server_pos, v).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(ordered.len() + server_only.len());
    let mut ordered = ordered.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let take_server = match (server_only.peek(), ordered.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(s), Some(o)) => matches!(
                (position(&server_pos, s), position(&server_pos, o)),
                (Some(si), Some(oi)) if si < oi
            ),
        };
        let next = if take_server {
            server_only.next()
        } else {
            ordered.next()
        };
        out.extend(next);
    }
    out
}

/// Applies `$retainKeys`: checks that the patch sets only listed fields, then drops the fields
/// of `original` not listed.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    retain: &Value,
    path: &str,
) -> Result<(), PatchError> {
    let directive_path = child(path, RETAIN_KEYS);
    let Some(list) = retain.as_array() else {
        return Err(invalid(&directive_path, "must be a list of field names"));
    };
    let keep: HashSet<&str> = list.iter().filter_map(Value::as_str).collect();
    for (key, value) in patch {
        if !value.is_null() && !is_directive(key) && !keep.contains(key.as_str()) {
            return Err(invalid(
                &directive_path,
                format!("the patch sets \"{key}\", which is not listed"),
            ));
        }
    }
    original.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

/// Applies `$setElementOrder/<name>`: merges the list `name` and orders it. Returns whether the
/// list was handled; the directive is ignored on lists that do not merge.
fn set_element_order(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    fields: Fields,
    name: &str,
    order: &Value,
    path: &str,
) -> Result<bool, PatchError> {
    let directive_path = child(path, &format!("{SET_ELEMENT_ORDER}{name}"));
    let list_path = child(path, name);
    let Some(order) = order.as_array() else {
        return Err(invalid(&directive_path, "must be a list"));
    };
    let field = lookup(fields, name);
    let key = match field {
        Some(Field::Keyed { key, .. }) => Some(key),
        Some(Field::Set) => None,
        _ => return Ok(false),
    };
    let as_list = |value: Option<&Value>, path: &str| match value {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(_) => Err(invalid(path, "expected a list")),
    };
    if let Some(key) = key
        && let Some(i) = order.iter().position(|v| v.get(key).is_none())
    {
        return Err(invalid(
            &format!("{directive_path}[{i}]"),
            format!("missing merge key \"{key}\""),
        ));
    }
    let have = as_list(original.get(name), &list_path)?;
    let want = as_list(patch.get(name), &list_path)?;
    if let Some(want) = &want {
        check_order(want, order, key, &directive_path)?;
    }
    let server = have.clone().unwrap_or_default();
    let merged = match (have, want) {
        (None, None) => return Ok(true),
        (Some(have), None) => have,
        (have, Some(want)) => merge_list(have.unwrap_or_default(), &want, field, &list_path)?,
    };
    let order = order.iter().filter_map(|v| element_identity(v, key));
    let ordered = normalize_order(merged, order, &server, key);
    original.insert(name.to_string(), Value::Array(ordered));
    Ok(true)
}

/// Checks that the patch list names its elements in the order of `$setElementOrder`, which
/// must name them all.
fn check_order(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
    path: &str,
) -> Result<(), PatchError> {
    let mut order_ids = order.iter().filter_map(|v| element_identity(v, key));
    for element in patch {
        if element.get(PATCH).is_some() {
            continue;
        }
        let Some(id) = element_identity(element, key) else {
            continue;
        };
        if !order_ids.any(|o| o == id) {
            return Err(invalid(
                path,
                "the order of the patch list does not match this list",
            ));
        }
    }
    Ok(())
}

/// Applies `$deleteFromPrimitiveList/<name>`: removes the listed values from the list `name`.
fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    name: &str,
    values: &Value,
    path: &str,
) -> Result<(), PatchError> {
    let Some(values) = values.as_array() else {
        return Err(invalid(path, "must be a list"));
    };
    let doomed: HashSet<String> = values.iter().map(identity).collect();
    match original.get_mut(name) {
        None => Ok(()),
        Some(Value::Array(items)) => {
            items.retain(|v| !doomed.contains(&identity(v)));
            Ok(())
        }
        Some(_) => Err(invalid(path, format!("\"{name}\" is not a list"))),
    }
}

/// Computes the strategic merge patch `kubectl apply` sends to turn the live object `current`
/// into the new configuration `modified`, given the configuration applied last (`original`,
/// from the `kubectl.kubernetes.io/last-applied-configuration` annotation; `None` on first
/// apply).
///
/// Fields that `original` has and `modified` lacks are deleted (`null`, `$patch: delete`
/// elements, `$deleteFromPrimitiveList`); fields where `current` differs from `modified` are
/// set; fields only `current` has (set by controllers, defaulting or other clients) are left
/// alone. Merging lists get `$setElementOrder` when they change or their order does, and
/// `retainKeys` unions get `$retainKeys`, as kubectl sends them. Applying the result to
/// `current` with [`apply`] yields the object to store.
///
/// For kinds without patch metadata every list is replaced, so the patch is a JSON merge patch.
pub fn three_way(
    original: Option<&Value>,
    modified: &Value,
    current: &Value,
    gvk: &GroupVersionKind,
) -> Result<Value, PatchError> {
    let object = |value: &Value, what: &str| {
        value
            .as_object()
            .cloned()
            .ok_or_else(|| PatchError::Invalid(format!("the {what} is not a JSON object")))
    };
    let original = match original {
        Some(value) => object(value, "last-applied configuration")?,
        None => Map::new(),
    };
    let modified = object(modified, "new configuration")?;
    let current = object(current, "live object")?;
    check_depth(&modified)?;
    let fields = kind_fields(gvk).unwrap_or(&[]);
    diff_map(&original, &modified, &current, fields, false, "").map(Value::Object)
}

/// The patch from `current` to `modified` for one map, with the deletions from `original`.
fn diff_map(
    original: &Map<String, Value>,
    modified: &Map<String, Value>,
    current: &Map<String, Value>,
    fields: Fields,
    retain: bool,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    let empty = Map::new();
    let mut patch = Map::new();
    for (key, want) in modified {
        let field = lookup(fields, key);
        let key_path = child(path, key);
        let old = original.get(key);
        match (current.get(key), want) {
            (Some(Value::Object(have)), Value::Object(want)) => {
                let old = old.and_then(Value::as_object).unwrap_or(&empty);
                let retain = matches!(
                    field,
                    Some(Field::Object {
                        retain_keys: true,
                        ..
                    })
                );
                let sub = diff_map(old, want, have, fields_of(field), retain, &key_path)?;
                if !sub.is_empty() {
                    patch.insert(key.clone(), Value::Object(sub));
                }
            }
            (Some(Value::Array(have)), Value::Array(want)) => {
                let old = old.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
                diff_list(&mut patch, key, old, want, have, field, &key_path)?;
            }
            (Some(have), want) if have == want => {}
            _ => {
                patch.insert(key.clone(), want.clone());
            }
        }
    }
    for key in original.keys() {
        if !modified.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    if retain {
        let mut keys: Vec<&String> = modified
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        let has_others = |map: &Map<String, Value>| {
            map.iter()
                .any(|(k, v)| !v.is_null() && !modified.contains_key(k))
        };
        if !keys.is_empty() && (!patch.is_empty() || has_others(current) || has_others(original)) {
            patch.insert(
                RETAIN_KEYS.to_string(),
                Value::from_iter(keys.into_iter().cloned()),
            );
        }
    }
    Ok(patch)
}

/// Adds the patch of the list `key` to `patch`: the list itself when it is replaced, or its
/// changed and added elements with the directives that delete and order the others.
fn diff_list(
    patch: &mut Map<String, Value>,
    key: &str,
    original: &[Value],
    modified: &[Value],
    current: &[Value],
    field: Option<Field>,
    path: &str,
) -> Result<(), PatchError> {
    if !matches!(field, Some(Field::Keyed { .. } | Field::Set)) {
        if current != modified {
            patch.insert(key.to_string(), Value::Array(modified.to_vec()));
        }
        return Ok(());
    }
    let objects = element_kind(current, modified, path)? | element_kind(original, modified, path)?;
    let order_key = format!("{SET_ELEMENT_ORDER}{key}");
    if !objects {
        let ids = |list: &[Value]| list.iter().map(identity).collect::<HashSet<_>>();
        let (have, want) = (ids(current), ids(modified));
        let mut seen = HashSet::new();
        let mut fresh = |v: &&Value| seen.insert(identity(v));
        let added: Vec<Value> = modified
            .iter()
            .filter(|v| !have.contains(&identity(v)))
            .filter(&mut fresh)
            .cloned()
            .collect();
        let deleted: Vec<Value> = original
            .iter()
            .filter(|v| !want.contains(&identity(v)))
            .filter(fresh)
            .cloned()
            .collect();
        let reorder = (!current.is_empty() && current != modified) || !deleted.is_empty();
        if !added.is_empty() {
            patch.insert(key.to_string(), Value::Array(added));
        }
        if !deleted.is_empty() {
            patch.insert(
                format!("{DELETE_FROM_PRIMITIVE_LIST}{key}"),
                Value::Array(deleted),
            );
        }
        if reorder {
            patch.insert(order_key, Value::Array(modified.to_vec()));
        }
        return Ok(());
    }
    let Some(Field::Keyed {
        key: merge_key,
        item,
        retain_keys,
    }) = field
    else {
        return Err(invalid(
            path,
            "cannot merge a list of objects without a merge key",
        ));
    };
    let index = |list: &[Value]| {
        let mut map: HashMap<String, usize> = HashMap::new();
        for (i, v) in list.iter().enumerate() {
            if let Some(id) = element_identity(v, Some(merge_key)) {
                map.entry(id).or_insert(i);
            }
        }
        map
    };
    let (have, had) = (index(current), index(original));
    let empty = Map::new();
    let mut elements = Vec::new();
    let mut order = Vec::with_capacity(modified.len());
    let mut wanted = HashSet::new();
    for (i, element) in modified.iter().enumerate() {
        let element_path = format!("{path}[{i}]");
        let Some(id_value) = element.get(merge_key) else {
            return Err(invalid(
                &element_path,
                format!("missing merge key \"{merge_key}\""),
            ));
        };
        let id = identity(id_value);
        wanted.insert(id.clone());
        let mut named = Map::new();
        named.insert(merge_key.to_string(), id_value.clone());
        order.push(Value::Object(named.clone()));
        let Some(&j) = have.get(&id) else {
            elements.push(element.clone());
            continue;
        };
        let old = had.get(&id).and_then(|&j| original[j].as_object());
        let sub = diff_map(
            old.unwrap_or(&empty),
            element.as_object().unwrap_or(&empty),
            current[j].as_object().unwrap_or(&empty),
            item,
            retain_keys,
            &element_path,
        )?;
        if !sub.is_empty() {
            named.extend(sub);
            elements.push(Value::Object(named));
        }
    }
    let mut deleted = HashSet::new();
    for element in original {
        if let Some(id_value) = element.get(merge_key) {
            let id = identity(id_value);
            if !wanted.contains(&id) && deleted.insert(id) {
                let mut directive = Map::new();
                directive.insert(merge_key.to_string(), id_value.clone());
                directive.insert(PATCH.to_string(), Value::from("delete"));
                elements.push(Value::Object(directive));
            }
        }
    }
    let same_order = current.len() == modified.len()
        && current.iter().zip(modified).all(|(c, m)| {
            element_identity(c, Some(merge_key)) == element_identity(m, Some(merge_key))
        });
    let reorder =
        (!current.is_empty() && (!elements.is_empty() || !same_order)) || !deleted.is_empty();
    if !elements.is_empty() {
        patch.insert(key.to_string(), Value::Array(elements));
    }
    if reorder {
        patch.insert(order_key, Value::Array(order));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    /// What a test computes.
    enum Input {
        /// [`apply`] a patch (third) to an object (second) of a kind (`"apps/v1 Deployment"`).
        Apply(&'static str, Value, Value),
        /// [`three_way`] from the last-applied, new and live objects of a kind; expects
        /// `{"patch": …, "result": …}`, the result being the patch applied to the live object.
        ThreeWay(&'static str, Option<Value>, Value, Value),
    }

    fn gvk(kind: &str) -> GroupVersionKind {
        let (api_version, kind) = kind.split_once(' ').unwrap_or(("v1", kind));
        GroupVersionKind::from_api_version(api_version, kind)
    }

    /// Checks the result, or the error message, of `input`.
    fn check(input: Input, expected: Result<Value, &str>) {
        let (shown, got) = match &input {
            Input::Apply(kind, original, patch) => (
                format!("{kind}: {patch}"),
                apply(original, patch, &gvk(kind)),
            ),
            Input::ThreeWay(kind, original, modified, current) => {
                let gvk = gvk(kind);
                let got = three_way(original.as_ref(), modified, current, &gvk).and_then(|patch| {
                    let result = apply(current, &patch, &gvk)?;
                    Ok(json!({"patch": patch, "result": result}))
                });
                (format!("{kind}: {modified}"), got)
            }
        };
        let got = got.map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(String::from), "{shown}");
    }

    #[test]
    fn unknown_kinds_replace_lists_but_honour_nulls_and_map_directives() {
        let widget = "example.com/v1 Widget";
        for (original, patch, expected) in [
            (
                json!({"metadata": {"finalizers": ["a"]}, "spec": {"items": [{"name": "a", "x": 1}]}}),
                json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "a", "y": 2}]}}),
                Ok(
                    json!({"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "a", "y": 2}]}}),
                ),
            ),
            (
                json!({"spec": {"a": 1, "b": {"c": 2, "d": 3}}}),
                json!({"spec": {"a": null, "b": {"$patch": "replace", "e": 4}}}),
                Ok(json!({"spec": {"b": {"e": 4}}})),
            ),
            (
                json!({"spec": {"schema": {"$ref": "#/a"}, "b": {"c": 2}}}),
                json!({"spec": {"schema": {"$ref": "#/b"}, "b": {"$patch": "delete"}}}),
                Ok(json!({"spec": {"schema": {"$ref": "#/b"}, "b": {}}})),
            ),
            (
                json!({"spec": {"b": {"c": 2, "d": 3}}}),
                json!({"spec": {"b": {"$retainKeys": ["d"], "$patch": "merge", "e": null}}}),
                Ok(json!({"spec": {"b": {"d": 3}}})),
            ),
        ] {
            check(Input::Apply(widget, original, patch), expected);
        }
        assert!(!is_known_kind(&gvk(widget)));
        assert!(!is_known_kind(&gvk("apps/v1beta1 Deployment")));
    }

    #[test]
    fn every_builtin_kind_of_the_registry_has_patch_metadata() {
        for info in Registry::builtin().iter() {
            assert!(is_known_kind(&info.gvk()), "{}", info.kind);
        }
    }

    #[test]
    fn explicit_merges_and_values_the_patch_adds_lose_their_directives_and_nulls() {
        // Kubernetes refuses `$patch: merge`; here it means the default merge. Kubernetes keeps
        // `null`s inside values the patch adds and leaves them to decoding, which drops them.
        for (kind, original, patch, expected) in [
            (
                "apps/v1 Deployment",
                json!({"spec": {"replicas": 1, "strategy": {"type": "Recreate"}}}),
                json!({"spec": {"$patch": "merge", "replicas": 2}}),
                Ok(json!({"spec": {"replicas": 2, "strategy": {"type": "Recreate"}}})),
            ),
            (
                "v1 Pod",
                json!({"spec": {"containers": [{"name": "a", "image": "x"}]}}),
                json!({"spec": {"containers": [{"$patch": "merge"}, {"name": "a", "$patch": "merge", "image": "y"}]}}),
                Ok(json!({"spec": {"containers": [{"name": "a", "image": "y"}]}})),
            ),
            (
                "v1 Pod",
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {"containers": [{"name": "b", "env": [{"name": "E", "value": null}, {"name": "F", "$patch": "delete"}]}],
                                "initContainers": [{"name": "i", "args": null}, {"$patch": "replace"}]}}),
                Ok(
                    json!({"spec": {"containers": [{"name": "b", "env": [{"name": "E"}]}, {"name": "a"}],
                                   "initContainers": [{"name": "i"}]}}),
                ),
            ),
        ] {
            check(Input::Apply(kind, original, patch), expected);
        }
    }

    #[test]
    fn deeply_nested_patches_apply_up_to_the_depth_limit() {
        let deep = |levels: usize| (0..levels).fold(json!(1), |v, _| json!({"a": v}));
        check(
            Input::Apply("v1 ConfigMap", deep(250), deep(250)),
            Ok(deep(250)),
        );
        check(
            Input::Apply("v1 ConfigMap", json!({}), deep(250)),
            Ok(deep(250)),
        );
    }

    #[test]
    fn three_way_refuses_configurations_it_cannot_diff() {
        for (kind, original, modified, current, expected) in [
            (
                "v1 Pod",
                None,
                json!([1]),
                json!({}),
                "invalid patch: the new configuration is not a JSON object",
            ),
            (
                "v1 Pod",
                Some(json!("x")),
                json!({}),
                json!({}),
                "invalid patch: the last-applied configuration is not a JSON object",
            ),
            (
                "v1 Pod",
                None,
                json!({"spec": {"containers": [{"image": "x"}]}}),
                json!({"spec": {"containers": [{"name": "a"}]}}),
                "invalid patch: spec.containers[0]: missing merge key \"name\"",
            ),
            (
                "v1 Pod",
                None,
                json!({"spec": {"containers": ["a"]}}),
                json!({"spec": {"containers": [{"name": "a"}]}}),
                "invalid patch: spec.containers: list element types are not identical",
            ),
        ] {
            check(
                Input::ThreeWay(kind, original, modified, current),
                Err(expected),
            );
        }
    }

    #[test]
    fn malformed_patches_are_refused_with_the_field_path() {
        let deep = (0..300).fold(json!(1), |v, _| json!({"a": v}));
        for (kind, original, patch, expected) in [
            (
                "v1 ConfigMap",
                json!({}),
                json!([1]),
                "invalid patch: a strategic merge patch must be a JSON object",
            ),
            (
                "v1 ConfigMap",
                json!("x"),
                json!({}),
                "invalid patch: the patched object is not a JSON object",
            ),
            (
                "v1 ConfigMap",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": "a"}}),
                "invalid patch: metadata.$setElementOrder/finalizers: must be a list",
            ),
            (
                "v1 ConfigMap",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
                "invalid patch: metadata.$deleteFromPrimitiveList/finalizers: must be a list",
            ),
            (
                "v1 ConfigMap",
                json!({"metadata": {"labels": {"a": "b"}}}),
                json!({"metadata": {"$deleteFromPrimitiveList/labels": ["a"]}}),
                "invalid patch: metadata.$deleteFromPrimitiveList/labels: \"labels\" is not a list",
            ),
            (
                "v1 ConfigMap",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["a"], "finalizers": "a"}}),
                "invalid patch: metadata.finalizers: expected a list",
            ),
            (
                "v1 Pod",
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {"$setElementOrder/containers": [{"image": "a"}]}}),
                "invalid patch: spec.$setElementOrder/containers[0]: missing merge key \"name\"",
            ),
            (
                "v1 Node",
                json!({"spec": {"podCIDRs": ["a"]}}),
                json!({"spec": {"podCIDRs": [["b"]]}}),
                "invalid patch: spec.podCIDRs: lists of lists cannot be merged",
            ),
            (
                "v1 Node",
                json!({"spec": {"podCIDRs": [{"a": 1}]}}),
                json!({"spec": {"podCIDRs": [{"b": 1}]}}),
                "invalid patch: spec.podCIDRs: cannot merge a list of objects without a merge key",
            ),
            (
                "v1 ConfigMap",
                json!({}),
                deep,
                "invalid patch: the patch nests deeper than 256 levels",
            ),
        ] {
            check(Input::Apply(kind, original, patch), Err(expected));
        }
    }

    #[test]
    fn maps_merge_nulls_delete_and_map_directives_work_like_kubectl() {
        for (kind, original, patch, expected) in [
            (
                // maps merge recursively and null deletes a key
                "v1 ConfigMap",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}}),
                json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": {"y": "2"}}),
                Ok(json!({
                    "data": {"x": "1", "y": "2"},
                    "metadata": {"labels": {"b": "2", "c": "3"}}
                })),
            ),
            (
                // a null for an absent key changes nothing
                "v1 ConfigMap",
                json!({"data": {"x": "1"}}),
                json!({"data": {"zz": null}, "binaryData": null}),
                Ok(json!({"data": {"x": "1"}})),
            ),
            (
                // a value of another type replaces the old one
                "v1 ConfigMap",
                json!({"data": {"x": "1"}}),
                json!({"data": "oops"}),
                Ok(json!({"data": "oops"})),
            ),
            (
                // $patch replace on a map replaces it
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "metadata": {"labels": {"app": "web", "tier": "front"}}
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "metadata": {"labels": {"$patch": "replace", "app": "api"}}
                        }
                    }
                }),
                Ok(json!({"spec": {"template": {"metadata": {"labels": {"app": "api"}}}}})),
            ),
            (
                // $patch delete on a map empties it
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "replicas": 2,
                        "strategy": {
                            "type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": 1}
                        }
                    }
                }),
                json!({"spec": {"strategy": {"$patch": "delete"}}}),
                Ok(json!({"spec": {"replicas": 2, "strategy": {}}})),
            ),
            (
                // $retainKeys clears the fields not listed
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "strategy": {
                            "type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": 1}
                        }
                    }
                }),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
                Ok(json!({"spec": {"strategy": {"type": "Recreate"}}})),
            ),
            (
                // $retainKeys refuses a patch that sets a field it does not list
                "apps/v1 Deployment",
                json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
                json!({
                    "spec": {
                        "strategy": {
                            "$retainKeys": ["type"],
                            "rollingUpdate": {"maxSurge": 2}
                        }
                    }
                }),
                Err(
                    "invalid patch: spec.strategy.$retainKeys: the patch sets \"rollingUpdate\", which is not listed",
                ),
            ),
            (
                // $retainKeys must be a list
                "apps/v1 Deployment",
                json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
                json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
                Err("invalid patch: spec.strategy.$retainKeys: must be a list of field names"),
            ),
            (
                // an unknown $patch value is refused
                "apps/v1 Deployment",
                json!({"spec": {"replicas": 1}}),
                json!({"spec": {"$patch": "bogus"}}),
                Err("invalid patch: spec: unknown patch type: \"bogus\""),
            ),
            (
                // lists without a patch strategy are replaced
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "app", "image": "nginx", "args": ["a", "b"]}
                                ]
                            }
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [{"name": "app", "args": ["c"]}],
                                "tolerations": [{"key": "k", "operator": "Exists"}]
                            }
                        }
                    }
                }),
                Ok(json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"args": ["c"], "image": "nginx", "name": "app"}
                                ],
                                "tolerations": [{"key": "k", "operator": "Exists"}]
                            }
                        }
                    }
                })),
            ),
        ] {
            check(Input::Apply(kind, original, patch), expected);
        }
    }

    #[test]
    fn lists_of_objects_merge_by_their_patch_merge_keys_like_kubectl() {
        for (kind, original, patch, expected) in [
            (
                // containers merge by name and new ones come before the untouched ones
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "app", "image": "nginx"},
                                    {"name": "side", "image": "busybox"}
                                ]
                            }
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "side", "image": "busybox:2"},
                                    {"name": "new", "image": "redis"}
                                ]
                            }
                        }
                    }
                }),
                Ok(json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"image": "nginx", "name": "app"},
                                    {"image": "busybox:2", "name": "side"},
                                    {"image": "redis", "name": "new"}
                                ]
                            }
                        }
                    }
                })),
            ),
            (
                // ports merge by container port, env by name and volume mounts by mount path
                "v1 Pod",
                json!({
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "nginx",
                                "ports": [{"containerPort": 80}, {"containerPort": 443}],
                                "env": [
                                    {"name": "A", "value": "1"},
                                    {"name": "B", "value": "2"}
                                ],
                                "volumeMounts": [
                                    {"name": "data", "mountPath": "/data"},
                                    {"name": "cache", "mountPath": "/cache"}
                                ]
                            }
                        ]
                    }
                }),
                json!({
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "ports": [
                                    {"containerPort": 8080},
                                    {"containerPort": 80, "name": "http"}
                                ],
                                "env": [
                                    {
                                        "name": "B",
                                        "value": null,
                                        "valueFrom": {
                                            "fieldRef": {"fieldPath": "metadata.name"}
                                        }
                                    },
                                    {"name": "A", "value": "9"}
                                ],
                                "volumeMounts": [{"mountPath": "/cache", "readOnly": true}]
                            }
                        ]
                    }
                }),
                Ok(json!({
                    "spec": {
                        "containers": [
                            {
                                "env": [
                                    {
                                        "name": "B",
                                        "valueFrom": {
                                            "fieldRef": {"fieldPath": "metadata.name"}
                                        }
                                    },
                                    {"name": "A", "value": "9"}
                                ],
                                "image": "nginx",
                                "name": "app",
                                "ports": [
                                    {"containerPort": 8080},
                                    {"containerPort": 80, "name": "http"},
                                    {"containerPort": 443}
                                ],
                                "volumeMounts": [
                                    {"mountPath": "/data", "name": "data"},
                                    {
                                        "mountPath": "/cache",
                                        "name": "cache",
                                        "readOnly": true
                                    }
                                ]
                            }
                        ]
                    }
                })),
            ),
            (
                // volume devices merge by device path
                "v1 Pod",
                json!({
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "volumeDevices": [{"name": "a", "devicePath": "/dev/a"}]
                            }
                        ]
                    }
                }),
                json!({
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "volumeDevices": [
                                    {"name": "b", "devicePath": "/dev/a"},
                                    {"name": "c", "devicePath": "/dev/c"}
                                ]
                            }
                        ]
                    }
                }),
                Ok(json!({
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "volumeDevices": [
                                    {"devicePath": "/dev/a", "name": "b"},
                                    {"devicePath": "/dev/c", "name": "c"}
                                ]
                            }
                        ]
                    }
                })),
            ),
            (
                // init and ephemeral containers merge by name
                "v1 Pod",
                json!({
                    "spec": {
                        "initContainers": [{"name": "init", "image": "a"}],
                        "ephemeralContainers": [{"name": "debug", "image": "b"}],
                        "containers": [{"name": "app"}]
                    }
                }),
                json!({
                    "spec": {
                        "initContainers": [{"name": "init", "image": "a2"}],
                        "ephemeralContainers": [{"name": "debug2", "image": "c"}]
                    }
                }),
                Ok(json!({
                    "spec": {
                        "containers": [{"name": "app"}],
                        "ephemeralContainers": [
                            {"image": "c", "name": "debug2"},
                            {"image": "b", "name": "debug"}
                        ],
                        "initContainers": [{"image": "a2", "name": "init"}]
                    }
                })),
            ),
            (
                // image pull secrets merge by name and host aliases by ip
                "v1 Pod",
                json!({
                    "spec": {
                        "containers": [{"name": "app"}],
                        "imagePullSecrets": [{"name": "reg"}],
                        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}]
                    }
                }),
                json!({
                    "spec": {
                        "imagePullSecrets": [{"name": "reg2"}],
                        "hostAliases": [
                            {"ip": "10.0.0.1", "hostnames": ["b"]},
                            {"ip": "10.0.0.2", "hostnames": ["c"]}
                        ]
                    }
                }),
                Ok(json!({
                    "spec": {
                        "containers": [{"name": "app"}],
                        "hostAliases": [
                            {"hostnames": ["b"], "ip": "10.0.0.1"},
                            {"hostnames": ["c"], "ip": "10.0.0.2"}
                        ],
                        "imagePullSecrets": [{"name": "reg2"}, {"name": "reg"}]
                    }
                })),
            ),
            (
                // volumes merge by name and honour $retainKeys
                "v1 Pod",
                json!({
                    "spec": {
                        "containers": [{"name": "app"}],
                        "volumes": [
                            {"name": "data", "emptyDir": {}},
                            {"name": "cfg", "configMap": {"name": "a"}}
                        ]
                    }
                }),
                json!({
                    "spec": {
                        "volumes": [
                            {
                                "name": "data",
                                "$retainKeys": ["name", "configMap"],
                                "configMap": {"name": "cm"}
                            }
                        ]
                    }
                }),
                Ok(json!({
                    "spec": {
                        "containers": [{"name": "app"}],
                        "volumes": [
                            {"configMap": {"name": "cm"}, "name": "data"},
                            {"configMap": {"name": "a"}, "name": "cfg"}
                        ]
                    }
                })),
            ),
            (
                // resource claims, topology spread constraints and scheduling gates merge by their keys
                "v1 Pod",
                json!({
                    "spec": {
                        "containers": [{"name": "app"}],
                        "resourceClaims": [{"name": "gpu", "resourceClaimName": "a"}],
                        "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}],
                        "schedulingGates": [{"name": "wait"}]
                    }
                }),
                json!({
                    "spec": {
                        "resourceClaims": [{"name": "gpu", "resourceClaimName": "b"}],
                        "topologySpreadConstraints": [{"topologyKey": "host", "maxSkew": 2}],
                        "schedulingGates": [{"name": "wait", "$patch": "delete"}]
                    }
                }),
                Ok(json!({
                    "spec": {
                        "containers": [{"name": "app"}],
                        "resourceClaims": [{"name": "gpu", "resourceClaimName": "b"}],
                        "schedulingGates": [],
                        "topologySpreadConstraints": [
                            {"maxSkew": 2, "topologyKey": "host"},
                            {"maxSkew": 1, "topologyKey": "zone"}
                        ]
                    }
                })),
            ),
            (
                // an element with $patch delete is removed
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "app", "image": "nginx"},
                                    {"name": "side", "image": "busybox"}
                                ]
                            }
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "side", "$patch": "delete"}]}
                        }
                    }
                }),
                Ok(json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"image": "nginx", "name": "app"}]}
                        }
                    }
                })),
            ),
            (
                // a $patch replace element replaces the whole list
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "app", "image": "nginx"},
                                    {"name": "side", "image": "busybox"}
                                ]
                            }
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"$patch": "replace"},
                                    {"name": "only", "image": "x"}
                                ]
                            }
                        }
                    }
                }),
                Ok(json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"image": "x", "name": "only"}]}
                        }
                    }
                })),
            ),
            (
                // an element without its merge key is refused
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "app", "image": "nginx"}]}
                        }
                    }
                }),
                json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
                Err("invalid patch: spec.template.spec.containers[0]: missing merge key \"name\""),
            ),
            (
                // a deletion without its merge key is refused
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "app", "image": "nginx"}]}
                        }
                    }
                }),
                json!({
                    "spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}
                }),
                Err("invalid patch: spec.template.spec.containers[0]: missing merge key \"name\""),
            ),
            (
                // an element with an unknown $patch is refused
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "app", "image": "nginx"}]}
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "app", "$patch": "bogus"}]}
                        }
                    }
                }),
                Err(
                    "invalid patch: spec.template.spec.containers[0]: unknown patch type: \"bogus\"",
                ),
            ),
            (
                // merging lists whose elements differ in type is refused
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "app", "image": "nginx"}]}
                        }
                    }
                }),
                json!({"spec": {"template": {"spec": {"containers": ["app"]}}}}),
                Err(
                    "invalid patch: spec.template.spec.containers: list element types are not identical",
                ),
            ),
            (
                // owner references merge by uid
                "v1 ConfigMap",
                json!({
                    "metadata": {
                        "ownerReferences": [
                            {"apiVersion": "v1", "kind": "Pod", "name": "a", "uid": "1"}
                        ]
                    }
                }),
                json!({
                    "metadata": {
                        "ownerReferences": [
                            {"apiVersion": "v1", "kind": "Pod", "name": "b", "uid": "2"},
                            {"uid": "1", "controller": true}
                        ]
                    }
                }),
                Ok(json!({
                    "metadata": {
                        "ownerReferences": [
                            {"apiVersion": "v1", "kind": "Pod", "name": "b", "uid": "2"},
                            {
                                "apiVersion": "v1",
                                "controller": true,
                                "kind": "Pod",
                                "name": "a",
                                "uid": "1"
                            }
                        ]
                    }
                })),
            ),
            (
                // service ports merge by port
                "v1 Service",
                json!({
                    "spec": {
                        "ports": [
                            {"name": "http", "port": 80, "targetPort": 8080},
                            {"name": "https", "port": 443}
                        ]
                    }
                }),
                json!({
                    "spec": {
                        "ports": [
                            {"port": 80, "targetPort": 9090},
                            {"name": "metrics", "port": 9100}
                        ]
                    }
                }),
                Ok(json!({
                    "spec": {
                        "ports": [
                            {"name": "http", "port": 80, "targetPort": 9090},
                            {"name": "metrics", "port": 9100},
                            {"name": "https", "port": 443}
                        ]
                    }
                })),
            ),
            (
                // service account secrets merge by name
                "v1 ServiceAccount",
                json!({"secrets": [{"name": "a"}]}),
                json!({"secrets": [{"name": "b"}]}),
                Ok(json!({"secrets": [{"name": "b"}, {"name": "a"}]})),
            ),
            (
                // webhooks and their match conditions merge by name
                "admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration",
                json!({
                    "webhooks": [
                        {
                            "name": "a.example.com",
                            "sideEffects": "None",
                            "matchConditions": [{"name": "x", "expression": "true"}]
                        }
                    ]
                }),
                json!({
                    "webhooks": [
                        {
                            "name": "a.example.com",
                            "matchConditions": [{"name": "y", "expression": "false"}]
                        }
                    ]
                }),
                Ok(json!({
                    "webhooks": [
                        {
                            "matchConditions": [
                                {"expression": "false", "name": "y"},
                                {"expression": "true", "name": "x"}
                            ],
                            "name": "a.example.com",
                            "sideEffects": "None"
                        }
                    ]
                })),
            ),
        ] {
            check(Input::Apply(kind, original, patch), expected);
        }
    }

    #[test]
    fn primitive_lists_and_element_order_follow_kubectl() {
        for (kind, original, patch, expected) in [
            (
                // finalizers merge as a set with new values first
                "v1 ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"finalizers": ["d", "b"]}}),
                Ok(json!({"metadata": {"finalizers": ["d", "a", "b", "c"]}})),
            ),
            (
                // patched finalizers keep their place among the server ones
                "v1 ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"finalizers": ["c", "d", "a"]}}),
                Ok(json!({"metadata": {"finalizers": ["b", "c", "d", "a"]}})),
            ),
            (
                // $deleteFromPrimitiveList removes values
                "v1 ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}}),
                Ok(json!({"metadata": {"finalizers": ["a", "c"]}})),
            ),
            (
                // $deleteFromPrimitiveList on an absent list does nothing
                "v1 ConfigMap",
                json!({"metadata": {"labels": {"a": "b"}}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
                Ok(json!({"metadata": {"labels": {"a": "b"}}})),
            ),
            (
                // $setElementOrder reorders a list of objects
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "app"},
                                    {"name": "side"},
                                    {"name": "third"}
                                ]
                            }
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "$setElementOrder/containers": [
                                    {"name": "third"},
                                    {"name": "app"},
                                    {"name": "side"}
                                ]
                            }
                        }
                    }
                }),
                Ok(json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "third"},
                                    {"name": "app"},
                                    {"name": "side"}
                                ]
                            }
                        }
                    }
                })),
            ),
            (
                // $setElementOrder places the additions of the patch
                "v1 ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({
                    "metadata": {
                        "$setElementOrder/finalizers": ["c", "d", "a", "b"],
                        "finalizers": ["d"]
                    }
                }),
                Ok(json!({"metadata": {"finalizers": ["c", "d", "a", "b"]}})),
            ),
            (
                // $setElementOrder with deletions orders what is left
                "apps/v1 Deployment",
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "app"},
                                    {"name": "side"},
                                    {"name": "third"}
                                ]
                            }
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "$setElementOrder/containers": [
                                    {"name": "side"},
                                    {"name": "new"},
                                    {"name": "app"}
                                ],
                                "containers": [
                                    {"name": "new", "image": "x"},
                                    {"name": "third", "$patch": "delete"}
                                ]
                            }
                        }
                    }
                }),
                Ok(json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "side"},
                                    {"image": "x", "name": "new"},
                                    {"name": "app"}
                                ]
                            }
                        }
                    }
                })),
            ),
            (
                // $setElementOrder that contradicts the patch list is refused
                "v1 ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({
                    "metadata": {
                        "$setElementOrder/finalizers": ["c", "b", "a"],
                        "finalizers": ["a", "c"]
                    }
                }),
                Err(
                    "invalid patch: metadata.$setElementOrder/finalizers: the order of the patch list does not match this list",
                ),
            ),
        ] {
            check(Input::Apply(kind, original, patch), expected);
        }
    }

    #[test]
    fn every_kind_finds_its_pod_template_and_conditions() {
        for (kind, original, patch, expected) in [
            (
                // pod status conditions merge by type, pod ips by ip
                "v1 Pod",
                json!({
                    "spec": {"containers": [{"name": "app"}]},
                    "status": {
                        "conditions": [
                            {"type": "Ready", "status": "False"},
                            {"type": "Initialized", "status": "True"}
                        ],
                        "podIPs": [{"ip": "10.0.0.1"}]
                    }
                }),
                json!({
                    "status": {
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "podIPs": [{"ip": "fd00::1"}]
                    }
                }),
                Ok(json!({
                    "spec": {"containers": [{"name": "app"}]},
                    "status": {
                        "conditions": [
                            {"status": "True", "type": "Ready"},
                            {"status": "True", "type": "Initialized"}
                        ],
                        "podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]
                    }
                })),
            ),
            (
                // node conditions and addresses merge by type, pod CIDRs as a set, taints are replaced
                "v1 Node",
                json!({
                    "spec": {
                        "podCIDRs": ["10.0.0.0/24"],
                        "taints": [{"key": "a", "effect": "NoSchedule"}]
                    },
                    "status": {
                        "conditions": [{"type": "Ready", "status": "False"}],
                        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]
                    }
                }),
                json!({
                    "spec": {
                        "podCIDRs": ["fd00::/64"],
                        "taints": [{"key": "b", "effect": "NoExecute"}]
                    },
                    "status": {
                        "conditions": [{"type": "MemoryPressure", "status": "False"}],
                        "addresses": [
                            {"type": "InternalIP", "address": "10.0.0.2"},
                            {"type": "Hostname", "address": "n1"}
                        ]
                    }
                }),
                Ok(json!({
                    "spec": {
                        "podCIDRs": ["fd00::/64", "10.0.0.0/24"],
                        "taints": [{"effect": "NoExecute", "key": "b"}]
                    },
                    "status": {
                        "addresses": [
                            {"address": "10.0.0.2", "type": "InternalIP"},
                            {"address": "n1", "type": "Hostname"}
                        ],
                        "conditions": [
                            {"status": "False", "type": "MemoryPressure"},
                            {"status": "False", "type": "Ready"}
                        ]
                    }
                })),
            ),
            (
                // deployment status conditions merge by type
                "apps/v1 Deployment",
                json!({
                    "status": {
                        "conditions": [
                            {"type": "Available", "status": "False"},
                            {"type": "Progressing", "status": "True"}
                        ]
                    }
                }),
                json!({"status": {"conditions": [{"type": "Available", "status": "True"}]}}),
                Ok(json!({
                    "status": {
                        "conditions": [
                            {"status": "True", "type": "Available"},
                            {"status": "True", "type": "Progressing"}
                        ]
                    }
                })),
            ),
            (
                // cron jobs merge containers at spec.jobTemplate.spec.template.spec
                "batch/v1 CronJob",
                json!({
                    "spec": {
                        "schedule": "* * * * *",
                        "jobTemplate": {
                            "spec": {
                                "template": {
                                    "spec": {
                                        "containers": [
                                            {
                                                "name": "job",
                                                "image": "a",
                                                "env": [{"name": "X", "value": "1"}]
                                            }
                                        ]
                                    }
                                }
                            }
                        }
                    }
                }),
                json!({
                    "spec": {
                        "jobTemplate": {
                            "spec": {
                                "template": {
                                    "spec": {
                                        "containers": [
                                            {
                                                "name": "job",
                                                "env": [{"name": "Y", "value": "2"}]
                                            }
                                        ]
                                    }
                                }
                            }
                        }
                    }
                }),
                Ok(json!({
                    "spec": {
                        "jobTemplate": {
                            "spec": {
                                "template": {
                                    "spec": {
                                        "containers": [
                                            {
                                                "env": [
                                                    {"name": "Y", "value": "2"},
                                                    {"name": "X", "value": "1"}
                                                ],
                                                "image": "a",
                                                "name": "job"
                                            }
                                        ]
                                    }
                                }
                            }
                        },
                        "schedule": "* * * * *"
                    }
                })),
            ),
            (
                // pod templates merge containers at template.spec
                "v1 PodTemplate",
                json!({"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}),
                json!({"template": {"spec": {"containers": [{"name": "b", "image": "y"}]}}}),
                Ok(json!({
                    "template": {
                        "spec": {
                            "containers": [
                                {"image": "y", "name": "b"},
                                {"image": "x", "name": "a"}
                            ]
                        }
                    }
                })),
            ),
            (
                // stateful sets, daemon sets, replica sets and jobs merge their template containers
                "apps/v1 StatefulSet",
                json!({
                    "spec": {
                        "template": {
                            "metadata": {"finalizers": ["x"]},
                            "spec": {"containers": [{"name": "a", "image": "x"}]}
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "metadata": {"finalizers": ["y"]},
                            "spec": {"containers": [{"name": "a", "image": "y"}]}
                        }
                    }
                }),
                Ok(json!({
                    "spec": {
                        "template": {
                            "metadata": {"finalizers": ["y", "x"]},
                            "spec": {"containers": [{"image": "y", "name": "a"}]}
                        }
                    }
                })),
            ),
            (
                // daemon sets merge their template containers
                "apps/v1 DaemonSet",
                json!({
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}
                    }
                }),
                json!({
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "b", "image": "y"}]}}
                    }
                }),
                Ok(json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"image": "y", "name": "b"},
                                    {"image": "x", "name": "a"}
                                ]
                            }
                        }
                    }
                })),
            ),
            (
                // jobs merge their template containers and status conditions
                "batch/v1 Job",
                json!({
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}
                    },
                    "status": {"conditions": [{"type": "Complete", "status": "False"}]}
                }),
                json!({
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "b", "image": "y"}]}}
                    },
                    "status": {"conditions": [{"type": "Failed", "status": "True"}]}
                }),
                Ok(json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"image": "y", "name": "b"},
                                    {"image": "x", "name": "a"}
                                ]
                            }
                        }
                    },
                    "status": {
                        "conditions": [
                            {"status": "True", "type": "Failed"},
                            {"status": "False", "type": "Complete"}
                        ]
                    }
                })),
            ),
            (
                // replica sets merge their template containers
                "apps/v1 ReplicaSet",
                json!({
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}
                    }
                }),
                json!({
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "a", "image": "z"}]}}
                    }
                }),
                Ok(json!({
                    "spec": {
                        "template": {"spec": {"containers": [{"image": "z", "name": "a"}]}}
                    }
                })),
            ),
        ] {
            check(Input::Apply(kind, original, patch), expected);
        }
    }

    #[test]
    fn three_way_patches_delete_what_the_configuration_dropped_and_keep_what_others_set() {
        for (kind, original, modified, current, expected) in [
            (
                // a first apply sets what differs and leaves server-set fields alone
                "apps/v1 Deployment",
                None,
                json!({
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "replicas": 2,
                        "template": {
                            "spec": {"containers": [{"name": "app", "image": "nginx:2"}]}
                        }
                    }
                }),
                json!({
                    "metadata": {"labels": {"app": "web"}, "uid": "u"},
                    "spec": {
                        "replicas": 1,
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "app",
                                        "image": "nginx:1",
                                        "terminationMessagePath": "/dev/termination-log"
                                    }
                                ],
                                "dnsPolicy": "ClusterFirst"
                            }
                        }
                    }
                }),
                json!({
                    "patch": {
                        "spec": {
                            "replicas": 2,
                            "template": {
                                "spec": {
                                    "containers": [{"name": "app", "image": "nginx:2"}],
                                    "$setElementOrder/containers": [{"name": "app"}]
                                }
                            }
                        }
                    },
                    "result": {
                        "metadata": {"labels": {"app": "web"}, "uid": "u"},
                        "spec": {
                            "replicas": 2,
                            "template": {
                                "spec": {
                                    "containers": [
                                        {
                                            "name": "app",
                                            "image": "nginx:2",
                                            "terminationMessagePath": "/dev/termination-log"
                                        }
                                    ],
                                    "dnsPolicy": "ClusterFirst"
                                }
                            }
                        }
                    }
                }),
            ),
            (
                // fields dropped from the configuration are deleted, fields others added stay
                "v1 ConfigMap",
                Some(json!({
                    "metadata": {"labels": {"a": "1", "b": "2"}},
                    "data": {"x": "1", "y": "2"}
                })),
                json!({"metadata": {"labels": {"a": "1"}}, "data": {"x": "1"}}),
                json!({
                    "metadata": {"labels": {"a": "1", "b": "2", "c": "3"}},
                    "data": {"x": "1", "y": "2", "z": "3"}
                }),
                json!({
                    "patch": {"metadata": {"labels": {"b": null}}, "data": {"y": null}},
                    "result": {
                        "metadata": {"labels": {"a": "1", "c": "3"}},
                        "data": {"x": "1", "z": "3"}
                    }
                }),
            ),
            (
                // dropped containers get a delete directive and injected sidecars stay
                "apps/v1 Deployment",
                Some(json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "app", "image": "a:1"},
                                    {"name": "old", "image": "o"}
                                ]
                            }
                        }
                    }
                })),
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "app", "image": "a:2"},
                                    {"name": "new", "image": "n"}
                                ]
                            }
                        }
                    }
                }),
                json!({
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "app",
                                        "image": "a:1",
                                        "imagePullPolicy": "IfNotPresent"
                                    },
                                    {"name": "old", "image": "o"},
                                    {"name": "istio", "image": "proxy"}
                                ]
                            }
                        }
                    }
                }),
                json!({
                    "patch": {
                        "spec": {
                            "template": {
                                "spec": {
                                    "containers": [
                                        {"name": "app", "image": "a:2"},
                                        {"name": "new", "image": "n"},
                                        {"name": "old", "$patch": "delete"}
                                    ],
                                    "$setElementOrder/containers": [
                                        {"name": "app"},
                                        {"name": "new"}
                                    ]
                                }
                            }
                        }
                    },
                    "result": {
                        "spec": {
                            "template": {
                                "spec": {
                                    "containers": [
                                        {
                                            "name": "app",
                                            "image": "a:2",
                                            "imagePullPolicy": "IfNotPresent"
                                        },
                                        {"name": "new", "image": "n"},
                                        {"name": "istio", "image": "proxy"}
                                    ]
                                }
                            }
                        }
                    }
                }),
            ),
            (
                // env vars and ports dropped inside a container are deleted by their keys
                "v1 Pod",
                Some(json!({
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "env": [
                                    {"name": "A", "value": "1"},
                                    {"name": "B", "value": "2"}
                                ],
                                "ports": [{"containerPort": 80}, {"containerPort": 443}]
                            }
                        ]
                    }
                })),
                json!({
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "env": [{"name": "A", "value": "1"}],
                                "ports": [{"containerPort": 80}]
                            }
                        ]
                    }
                }),
                json!({
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "env": [
                                    {"name": "A", "value": "1"},
                                    {"name": "B", "value": "2"},
                                    {"name": "C", "value": "3"}
                                ],
                                "ports": [
                                    {"containerPort": 80, "protocol": "TCP"},
                                    {"containerPort": 443, "protocol": "TCP"}
                                ]
                            }
                        ]
                    }
                }),
                json!({
                    "patch": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "env": [{"name": "B", "$patch": "delete"}],
                                    "$setElementOrder/env": [{"name": "A"}],
                                    "ports": [{"containerPort": 443, "$patch": "delete"}],
                                    "$setElementOrder/ports": [{"containerPort": 80}]
                                }
                            ],
                            "$setElementOrder/containers": [{"name": "app"}]
                        }
                    },
                    "result": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "app",
                                    "env": [
                                        {"name": "A", "value": "1"},
                                        {"name": "C", "value": "3"}
                                    ],
                                    "ports": [{"containerPort": 80, "protocol": "TCP"}]
                                }
                            ]
                        }
                    }
                }),
            ),
            (
                // service ports merge by port and keep their allocated node ports
                "v1 Service",
                Some(json!({
                    "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}
                })),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
                json!({
                    "spec": {
                        "ports": [
                            {"port": 80, "targetPort": 8080, "nodePort": 30080},
                            {"port": 443, "nodePort": 30443}
                        ],
                        "clusterIP": "10.0.0.1"
                    }
                }),
                json!({
                    "patch": {
                        "spec": {
                            "ports": [
                                {"port": 80, "targetPort": 9090},
                                {"port": 443, "$patch": "delete"}
                            ],
                            "$setElementOrder/ports": [{"port": 80}]
                        }
                    },
                    "result": {
                        "spec": {
                            "ports": [{"port": 80, "targetPort": 9090, "nodePort": 30080}],
                            "clusterIP": "10.0.0.1"
                        }
                    }
                }),
            ),
        ] {
            check(
                Input::ThreeWay(kind, original, modified, current),
                Ok(expected),
            );
        }
    }

    #[test]
    fn three_way_patches_carry_list_directives_and_retain_keys_like_kubectl() {
        for (kind, original, modified, current, expected) in [
            (
                // finalizers use $deleteFromPrimitiveList and $setElementOrder
                "v1 ConfigMap",
                Some(json!({"metadata": {"finalizers": ["a", "b"]}})),
                json!({"metadata": {"finalizers": ["a", "c"]}}),
                json!({"metadata": {"finalizers": ["x", "a", "b"]}}),
                json!({
                    "patch": {
                        "metadata": {
                            "finalizers": ["c"],
                            "$deleteFromPrimitiveList/finalizers": ["b"],
                            "$setElementOrder/finalizers": ["a", "c"]
                        }
                    },
                    "result": {"metadata": {"finalizers": ["x", "a", "c"]}}
                }),
            ),
            (
                // switching a deployment to Recreate sends $retainKeys to clear rollingUpdate
                "apps/v1 Deployment",
                None,
                json!({"spec": {"strategy": {"type": "Recreate"}}}),
                json!({
                    "spec": {
                        "strategy": {
                            "type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                        }
                    }
                }),
                json!({
                    "patch": {
                        "spec": {"strategy": {"type": "Recreate", "$retainKeys": ["type"]}}
                    },
                    "result": {"spec": {"strategy": {"type": "Recreate"}}}
                }),
            ),
            (
                // a volume switching its source sends $retainKeys for the element
                "v1 Pod",
                Some(json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}]}})),
                json!({"spec": {"volumes": [{"name": "data", "configMap": {"name": "cm"}}]}}),
                json!({"spec": {"volumes": [{"name": "data", "emptyDir": {}}]}}),
                json!({
                    "patch": {
                        "spec": {
                            "volumes": [
                                {
                                    "name": "data",
                                    "configMap": {"name": "cm"},
                                    "emptyDir": null,
                                    "$retainKeys": ["configMap", "name"]
                                }
                            ],
                            "$setElementOrder/volumes": [{"name": "data"}]
                        }
                    },
                    "result": {
                        "spec": {"volumes": [{"name": "data", "configMap": {"name": "cm"}}]}
                    }
                }),
            ),
        ] {
            check(
                Input::ThreeWay(kind, original, modified, current),
                Ok(expected),
            );
        }
    }

    #[test]
    fn three_way_patches_stay_small_and_treat_unknown_kinds_as_merge_patches() {
        for (kind, original, modified, current, expected) in [
            (
                // an unchanged configuration gives an empty patch
                "apps/v1 Deployment",
                Some(json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "app", "image": "a"}]}
                        }
                    }
                })),
                json!({
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "app", "image": "a"}]}
                        }
                    }
                }),
                json!({
                    "metadata": {"uid": "u"},
                    "spec": {
                        "replicas": 3,
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "app",
                                        "image": "a",
                                        "imagePullPolicy": "Always"
                                    }
                                ]
                            }
                        }
                    }
                }),
                json!({
                    "patch": {},
                    "result": {
                        "metadata": {"uid": "u"},
                        "spec": {
                            "replicas": 3,
                            "template": {
                                "spec": {
                                    "containers": [
                                        {
                                            "name": "app",
                                            "image": "a",
                                            "imagePullPolicy": "Always"
                                        }
                                    ]
                                }
                            }
                        }
                    }
                }),
            ),
            (
                // unknown kinds send lists whole, as a JSON merge patch
                "example.com/v1 Widget",
                Some(json!({"spec": {"items": ["a", "b"], "old": 1}})),
                json!({"spec": {"items": ["a"]}}),
                json!({"spec": {"items": ["a", "b"], "old": 1, "other": 2}}),
                json!({
                    "patch": {"spec": {"items": ["a"], "old": null}},
                    "result": {"spec": {"items": ["a"], "other": 2}}
                }),
            ),
            (
                // atomic lists equal to the live ones are not sent
                "v1 Pod",
                Some(json!({"spec": {"containers": [{"name": "app", "args": ["x"]}]}})),
                json!({"spec": {"containers": [{"name": "app", "args": ["y"]}]}}),
                json!({"spec": {"containers": [{"name": "app", "args": ["y"]}]}}),
                json!({
                    "patch": {},
                    "result": {"spec": {"containers": [{"name": "app", "args": ["y"]}]}}
                }),
            ),
        ] {
            check(
                Input::ThreeWay(kind, original, modified, current),
                Ok(expected),
            );
        }
    }
}
