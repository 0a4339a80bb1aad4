//! Server-side apply: Kubernetes' structured merge of an applied configuration into a live
//! object, and field ownership per manager (`metadata.managedFields`).
//!
//! The shape of an object comes from a [`Schema`]: for built-in kinds it is derived from the
//! strategic merge patch tables, as Kubernetes' OpenAPI derives it from the same Go tags (a list
//! with a `patchMergeKey` is `x-kubernetes-list-type: map` keyed by it, a merging list of
//! primitives is a `set`, every other list is `atomic`; label selectors and node selectors are
//! atomic maps); for custom resources it is read from the CRD's `openAPIV3Schema`
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`).
//!
//! [`apply`] and [`update`] follow sigs.k8s.io/structured-merge-diff's `Updater`: an apply
//! merges the configuration into the live object, removes the fields the manager applied last
//! time and no longer does (unless another manager owns them), and fails with a [`Conflict`] per
//! field whose value it would change while another manager owns it, unless forced, in which case
//! the others lose those fields. An update (create, `PUT`, other patches) gives its manager the
//! fields whose values it changed and takes them from the others. Equal values applied by two
//! managers are owned by both.

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, FieldSetError, Path, PathElement, canonical_json, path_string};
use super::strategic::{self, Field};
use crate::registry::GroupVersionKind;

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The applied configuration is not a valid object for its schema.
    #[error("{0}")]
    Invalid(String),
    /// Fields other managers own would change (a 409 in the API).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The object's `metadata.managedFields` cannot be read.
    #[error("metadata.managedFields: {0}")]
    ManagedFields(String),
}

impl From<FieldSetError> for ApplyError {
    fn from(e: FieldSetError) -> Self {
        ApplyError::ManagedFields(e.to_string())
    }
}

/// One field an apply would change while another manager owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The owner as Kubernetes prints it: `"kubectl"` for an applier,
    /// `"kubectl-edit" using apps/v1` for an updater.
    pub manager: String,
    /// The field as Kubernetes prints it (`.spec.replicas`).
    pub path: String,
    /// The field's path.
    pub field: Vec<PathElement>,
}

/// Whether every conflict is on a field of `last_applied`, client-side apply's last applied
/// configuration: kubectl's server-side apply (manager `kubectl`) then takes those fields over
/// without `--force-conflicts`, as Kubernetes' `lastAppliedManager` lets it, so that
/// `kubectl apply --server-side` after `kubectl apply` works.
pub fn within_last_applied(
    conflicts: &[Conflict],
    last_applied: &Value,
    schema: Schema,
    tracked: Tracked,
) -> bool {
    let Ok(set) = tracked_field_set(last_applied, schema, false, tracked) else {
        return false;
    };
    conflicts.iter().all(|c| set.contains(&c.field))
}

/// Kubernetes' message for a set of conflicts (`Apply failed with 1 conflict: conflict with
/// "kubectl-edit" using apps/v1: .spec.replicas`).
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager, only.path
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        for c in conflicts.iter().filter(|c| c.manager == manager) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// How the elements of a list are identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// The list is one value, replaced whole and owned whole.
    Atomic,
    /// A set of scalars, each owned on its own.
    Set,
    /// A list of objects identified by these key fields.
    Map(Vec<String>),
}

/// Maps that are one value in every built-in kind (`+mapType=atomic` / `+structType=atomic`):
/// label selectors and node selectors.
const ATOMIC_MAPS: &[&str] = &[
    "selector",
    "nodeSelector",
    "labelSelector",
    "namespaceSelector",
    "podSelector",
];

/// The metadata the server sets, which no manager owns.
const SERVER_SET_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// The shape of a value: how its lists and maps merge and are owned.
#[derive(Clone, Copy, Debug)]
pub enum Schema<'a> {
    /// A built-in kind's value with this patch metadata (`None`: a plain value).
    Builtin(Option<Field>),
    /// A map owned and replaced as one value.
    AtomicMap,
    /// The root of a custom resource with this `openAPIV3Schema` (its metadata is ObjectMeta).
    CustomRoot(&'a Value),
    /// A custom resource's value with this schema node.
    OpenApi(&'a Value),
    /// A value nothing is known about: maps merge, lists are atomic.
    Untyped,
}

static NO_SCHEMA: Value = Value::Null;

impl<'a> Schema<'a> {
    /// The schema of a built-in kind.
    pub fn builtin(gvk: &GroupVersionKind) -> Schema<'static> {
        Schema::Builtin(Some(Field::Object {
            fields: strategic::kind_fields(gvk).unwrap_or(strategic::PLAIN),
            retain_keys: false,
        }))
    }

    /// The schema of a custom resource, from its CRD version's `openAPIV3Schema`.
    pub fn custom(schema: Option<&'a Value>) -> Schema<'a> {
        Schema::CustomRoot(schema.unwrap_or(&NO_SCHEMA))
    }

    /// The schema of the field `name` of a map.
    pub fn field(self, name: &str) -> Schema<'a> {
        let builtin = |field: Option<Field>| {
            if ATOMIC_MAPS.contains(&name) {
                Schema::AtomicMap
            } else {
                Schema::Builtin(field)
            }
        };
        match self {
            Schema::Builtin(Some(Field::Object { fields, .. })) => {
                builtin(strategic::lookup(fields, name))
            }
            Schema::Builtin(_) => builtin(None),
            Schema::CustomRoot(_) if name == "metadata" => Schema::Builtin(Some(Field::Object {
                fields: strategic::PLAIN,
                retain_keys: false,
            }))
            .field("metadata"),
            Schema::CustomRoot(node) | Schema::OpenApi(node) => {
                match node.pointer(&format!(
                    "/properties/{}",
                    name.replace('~', "~0").replace('/', "~1")
                )) {
                    Some(child) => Schema::OpenApi(child),
                    None => match node.get("additionalProperties") {
                        Some(child) if child.is_object() => Schema::OpenApi(child),
                        _ => Schema::Untyped,
                    },
                }
            }
            Schema::AtomicMap | Schema::Untyped => Schema::Untyped,
        }
    }

    /// The schema of a list's elements.
    pub fn item(self) -> Schema<'a> {
        match self {
            Schema::Builtin(Some(Field::Keyed { item, .. })) => {
                Schema::Builtin(Some(Field::Object {
                    fields: item,
                    retain_keys: false,
                }))
            }
            Schema::Builtin(_) => Schema::Builtin(None),
            Schema::OpenApi(node) => node.get("items").map_or(Schema::Untyped, Schema::OpenApi),
            _ => Schema::Untyped,
        }
    }

    /// How a list with this schema is identified.
    pub fn list_type(self) -> ListType {
        match self {
            Schema::Builtin(Some(Field::Keyed { key, .. })) => ListType::Map(vec![key.to_string()]),
            Schema::Builtin(Some(Field::Set)) => ListType::Set,
            Schema::OpenApi(node) => {
                match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => ListType::Set,
                    Some("map") => ListType::Map(
                        node.get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|keys| {
                                keys.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    _ => ListType::Atomic,
                }
            }
            _ => ListType::Atomic,
        }
    }

    /// Whether a map with this schema is one value.
    pub fn atomic_map(self) -> bool {
        match self {
            Schema::AtomicMap => true,
            Schema::OpenApi(node) => {
                node.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }
            _ => false,
        }
    }
}

/// Which part of an object a write may own: writes to the object itself do not own `status`
/// when the kind has a status subresource, writes to `/status` own only `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracked {
    /// Every field (kinds without a status subresource).
    All,
    /// Every field but `status`.
    AllButStatus,
    /// Only `status`.
    StatusOnly,
}

fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

/// The set without what no manager owns: identity and server-set metadata, and what the
/// scope leaves out.
/// The fields of `value` a manager can own ([`field_set`] without `apiVersion`, `kind`, the
/// metadata the server sets, and what `tracked` leaves out). Those parts are not walked at all:
/// a pod's `managedFields` or, for a status write, its spec cost nothing.
fn tracked_field_set(
    value: &Value,
    schema: Schema,
    strict: bool,
    tracked: Tracked,
) -> Result<FieldSet, ApplyError> {
    let Value::Object(map) = value else {
        return field_set(value, schema, strict);
    };
    let mut set = FieldSet::new();
    let mut path = Vec::new();
    for (name, child) in map {
        let keep = match name.as_str() {
            "apiVersion" | "kind" => false,
            "status" => tracked != Tracked::AllButStatus,
            _ => tracked != Tracked::StatusOnly,
        };
        if !keep {
            continue;
        }
        path.push(field(name));
        match child {
            Value::Object(meta) if name == "metadata" && !schema.field(name).atomic_map() => {
                let meta_schema = schema.field(name);
                for (m, c) in meta {
                    if SERVER_SET_META.contains(&m.as_str()) {
                        continue;
                    }
                    path.push(field(m));
                    walk(c, meta_schema.field(m), strict, &mut path, &mut set)?;
                    if c.as_object().is_some_and(Map::is_empty) {
                        set.insert(&path);
                    }
                    path.pop();
                }
            }
            _ => walk(child, schema.field(name), strict, &mut path, &mut set)?,
        }
        if child.as_object().is_some_and(Map::is_empty) {
            set.insert(&path);
        }
        path.pop();
    }
    Ok(set)
}

/// The path element of an associative list's element, or why it has none.
fn key_of(item: &Value, keys: &[String]) -> Result<PathElement, String> {
    let Some(map) = item.as_object() else {
        return Err("associative list with keys has an element that is not a map".into());
    };
    let mut key = Map::new();
    for k in keys {
        match map.get(k) {
            Some(v) if !v.is_null() => {
                key.insert(k.clone(), v.clone());
            }
            _ => {
                return Err(format!(
                    "associative list with keys has an element that omits key field {k:?} (and doesn't have default value)"
                ));
            }
        }
    }
    Ok(PathElement::Key(canonical_json(&Value::Object(key))))
}

/// The fields of `value` as a manager setting it owns them: every scalar, every empty map,
/// every atomic list or map, and every element of a set or associative list. `strict` refuses
/// associative-list elements without their keys and duplicated elements (an applied
/// configuration); otherwise they are skipped (a stored object).
pub fn field_set(value: &Value, schema: Schema, strict: bool) -> Result<FieldSet, ApplyError> {
    let mut set = FieldSet::new();
    walk(value, schema, strict, &mut Vec::new(), &mut set)?;
    Ok(set)
}

fn walk(
    value: &Value,
    schema: Schema,
    strict: bool,
    path: &mut Vec<PathElement>,
    out: &mut FieldSet,
) -> Result<(), ApplyError> {
    let invalid = |path: &[PathElement], message: String| {
        ApplyError::Invalid(format!("{}: {message}", path_string(path)))
    };
    match value {
        Value::Object(map) if !schema.atomic_map() || path.is_empty() => {
            for (name, child) in map {
                path.push(field(name));
                walk(child, schema.field(name), strict, path, out)?;
                if child.as_object().is_some_and(Map::is_empty) {
                    out.insert(path);
                }
                path.pop();
            }
        }
        Value::Array(items) => match schema.list_type() {
            ListType::Atomic => out.insert(path),
            ListType::Set => {
                for item in items {
                    path.push(PathElement::Value(canonical_json(item)));
                    if strict && out.contains(path) {
                        let dup = path_string(&path[path.len() - 1..]);
                        path.pop();
                        return Err(invalid(path, format!("duplicate entries for key {dup}")));
                    }
                    out.insert(path);
                    path.pop();
                }
            }
            ListType::Map(keys) => {
                for (i, item) in items.iter().enumerate() {
                    let pe = match key_of(item, &keys) {
                        Ok(pe) => pe,
                        Err(e) if strict => return Err(invalid(path, format!("element {i}: {e}"))),
                        Err(_) => continue,
                    };
                    path.push(pe);
                    if out.covers(path) {
                        if strict {
                            let dup = path_string(&path[path.len() - 1..]);
                            path.pop();
                            return Err(invalid(path, format!("duplicate entries for key {dup}")));
                        }
                        path.pop();
                        continue;
                    }
                    walk(item, schema.item(), strict, path, out)?;
                    out.insert(path);
                    path.pop();
                }
            }
        },
        _ => out.insert(path),
    }
    Ok(())
}

fn matches_key(item: &Value, key: &str) -> bool {
    let want: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
    item.is_object() && want.iter().all(|(k, v)| item.get(k) == Some(v))
}

fn matches(item: &Value, pe: &PathElement) -> bool {
    match pe {
        PathElement::Key(key) => matches_key(item, key),
        PathElement::Value(v) => canonical_json(item) == *v,
        _ => false,
    }
}

/// The value at `path`, if the object has one there.
pub fn value_at<'v>(obj: &'v Value, path: &Path) -> Option<&'v Value> {
    let mut cur = obj;
    for pe in path {
        cur = match pe {
            PathElement::Field(name) => cur.as_object()?.get(name)?,
            PathElement::Index(i) => cur.as_array()?.get(*i)?,
            other => cur.as_array()?.iter().find(|item| matches(item, other))?,
        };
    }
    Some(cur)
}

fn value_at_mut<'v>(obj: &'v mut Value, path: &Path) -> Option<&'v mut Value> {
    let mut cur = obj;
    for pe in path {
        cur = match pe {
            PathElement::Field(name) => cur.as_object_mut()?.get_mut(name)?,
            PathElement::Index(i) => cur.as_array_mut()?.get_mut(*i)?,
            other => cur
                .as_array_mut()?
                .iter_mut()
                .find(|item| matches(item, other))?,
        };
    }
    Some(cur)
}

/// Removes the value at `path`; whether there was one.
fn remove_at(obj: &mut Value, path: &Path) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let Some(container) = value_at_mut(obj, parent) else {
        return false;
    };
    match (last, container) {
        (PathElement::Field(name), Value::Object(map)) => map.shift_remove(name).is_some(),
        (PathElement::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        (pe, Value::Array(items)) => {
            let before = items.len();
            items.retain(|item| !matches(item, pe));
            items.len() != before
        }
        _ => false,
    }
}

/// Whether `path` is a key field of an associative list's element (which stays as long as the
/// element does).
fn is_key_field(path: &Path) -> bool {
    match path {
        [.., PathElement::Key(key), PathElement::Field(name)] => {
            serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|k| k.contains_key(name))
        }
        _ => false,
    }
}

/// Merges an applied configuration into a live value.
pub fn merge(live: &Value, config: &Value, schema: Schema) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !schema.atomic_map() => {
            let mut out = l.clone();
            for (name, cv) in c {
                if cv.is_null() {
                    out.shift_remove(name);
                    continue;
                }
                let merged = match l.get(name) {
                    Some(lv) => merge(lv, cv, schema.field(name)),
                    None => cv.clone(),
                };
                out.insert(name.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => match schema.list_type() {
            ListType::Atomic => config.clone(),
            ListType::Set => {
                let mut out = l.clone();
                for item in c {
                    if !out.contains(item) {
                        out.push(item.clone());
                    }
                }
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let mut out = l.clone();
                for item in c {
                    let Ok(pe) = key_of(item, &keys) else {
                        out.push(item.clone());
                        continue;
                    };
                    match out.iter_mut().find(|o| matches(o, &pe)) {
                        Some(existing) => *existing = merge(existing, item, schema.item()),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
        },
        _ => config.clone(),
    }
}

/// What `new` sets differently from `live`, among the paths of `new_set`: added paths, and
/// scalars or atomic values that changed (an element of a list is changed only when added).
fn changed(live: &Value, new: &Value, new_set: &FieldSet) -> FieldSet {
    let mut out = FieldSet::new();
    for path in new_set.paths() {
        let element = matches!(
            path.last(),
            Some(PathElement::Key(_) | PathElement::Value(_))
        );
        match value_at(live, &path) {
            None => out.insert(&path),
            Some(_) if element => {}
            Some(lv) if Some(lv) != value_at(new, &path) => out.insert(&path),
            Some(_) => {}
        }
    }
    out
}

/// The maps leading to the paths of `new_set` that `live` lacks: an update that adds them owns
/// them too (`.` in fieldsV1), as Kubernetes' comparison reports them added.
fn added_parents(live: &Value, new_set: &FieldSet) -> FieldSet {
    let mut out = FieldSet::new();
    for path in new_set.paths() {
        for len in 1..path.len() {
            let prefix = &path[..len];
            if matches!(prefix.last(), Some(PathElement::Field(_)))
                && value_at(live, prefix).is_none()
            {
                out.insert(prefix);
            }
        }
    }
    out
}

/// The paths of `live_set` that `new` no longer has.
fn removed(live_set: &FieldSet, new: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    for path in live_set.paths() {
        if value_at(new, &path).is_none() {
            out.insert(&path);
        }
    }
    out
}

/// Whether a managedFields entry came from an apply or another write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or another patch.
    Update,
}

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEntry {
    /// The manager's name (`kubectl`, `kube-controller-manager`).
    pub manager: String,
    /// How it wrote.
    pub operation: Operation,
    /// The API version its fields are in.
    pub api_version: String,
    /// When its set last changed (RFC 3339).
    pub time: Option<String>,
    /// The subresource it wrote through (`status`), empty for the object itself.
    pub subresource: String,
    /// The fields it owns.
    pub fields: FieldSet,
}

/// Who writes: the manager entry a write files its fields under.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    /// The manager's name.
    pub manager: &'a str,
    /// The API version of the request.
    pub api_version: &'a str,
    /// The subresource written through, empty for the object itself.
    pub subresource: &'a str,
    /// The time of the write (RFC 3339).
    pub time: &'a str,
}

impl ManagedEntry {
    /// Whether this is the entry of `writer` writing with `operation` (updates are kept per
    /// API version, applies are not, as in Kubernetes' manager identifiers).
    fn is(&self, writer: &Writer, operation: Operation) -> bool {
        self.manager == writer.manager
            && self.operation == operation
            && self.subresource == writer.subresource
            && (operation == Operation::Apply || self.api_version == writer.api_version)
    }

    /// The manager as Kubernetes names it in a conflict.
    pub fn display(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

/// Reads `metadata.managedFields` (absent or `null`: no entries).
pub fn read_managed_fields(value: Option<&Value>) -> Result<Vec<ManagedEntry>, ApplyError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApplyError::ManagedFields("must be a list".into())),
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let operation = match item.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => {
                return Err(ApplyError::ManagedFields(format!(
                    "[{i}].operation: must be Apply or Update, not {other:?}"
                )));
            }
        };
        if let Some(t) = item.get("fieldsType").and_then(Value::as_str)
            && t != "FieldsV1"
        {
            return Err(ApplyError::ManagedFields(format!(
                "[{i}].fieldsType: must be FieldsV1, not {t:?}"
            )));
        }
        let fields = match item.get("fieldsV1") {
            Some(doc) => FieldSet::from_fields_v1(doc)
                .map_err(|e| ApplyError::ManagedFields(format!("[{i}].fieldsV1: {e}")))?,
            None => FieldSet::new(),
        };
        out.push(ManagedEntry {
            manager: text("manager"),
            operation,
            api_version: text("apiVersion"),
            time: item.get("time").and_then(Value::as_str).map(str::to_string),
            subresource: text("subresource"),
            fields,
        });
    }
    Ok(out)
}

/// Writes entries as `metadata.managedFields`.
pub fn write_managed_fields(entries: &[ManagedEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("apiVersion".into(), e.api_version.clone().into());
                m.insert("fieldsType".into(), "FieldsV1".into());
                m.insert("fieldsV1".into(), e.fields.to_fields_v1());
                m.insert("manager".into(), e.manager.clone().into());
                let op = match e.operation {
                    Operation::Apply => "Apply",
                    Operation::Update => "Update",
                };
                m.insert("operation".into(), op.into());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), e.subresource.clone().into());
                }
                if let Some(t) = &e.time {
                    m.insert("time".into(), t.clone().into());
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Files `fields` under the writer's entry for `operation` (made when missing), and drops
/// entries left without fields.
fn file(managers: &mut Vec<ManagedEntry>, writer: &Writer, operation: Operation, fields: FieldSet) {
    match managers.iter_mut().find(|e| e.is(writer, operation)) {
        Some(entry) => {
            if entry.fields != fields || entry.api_version != writer.api_version {
                entry.time = Some(writer.time.to_string());
            }
            entry.fields = fields;
            entry.api_version = writer.api_version.to_string();
        }
        None => managers.push(ManagedEntry {
            manager: writer.manager.to_string(),
            operation,
            api_version: writer.api_version.to_string(),
            time: Some(writer.time.to_string()),
            subresource: writer.subresource.to_string(),
            fields,
        }),
    }
    managers.retain(|e| !e.fields.is_empty());
}

/// Records an update (create, `PUT`, a JSON/merge/strategic patch) from `live` to `new` by
/// `writer`: it owns what it changed (and the maps it added), the others lose it, and everyone
/// loses what it removed. A create passes an empty object as `live`.
pub fn update(
    live: &Value,
    new: &Value,
    schema: Schema,
    tracked: Tracked,
    managers: &mut Vec<ManagedEntry>,
    writer: &Writer,
) {
    let live_set = tracked_field_set(live, schema, false, tracked).unwrap_or_default();
    let new_set = tracked_field_set(new, schema, false, tracked).unwrap_or_default();
    let changed = changed(live, new, &new_set).union(&added_parents(live, &new_set));
    let removed = removed(&live_set, new);
    for entry in managers.iter_mut() {
        entry.fields = entry.fields.difference(&changed).difference(&removed);
    }
    let mine = managers
        .iter()
        .find(|e| e.is(writer, Operation::Update))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    file(
        managers,
        writer,
        Operation::Update,
        mine.union(&changed).difference(&removed),
    );
}

/// Applies `config` to `live` for `writer`: the merged object, with `managers` updated. Fails
/// with the conflicts when `config` changes fields other managers own, unless `force`.
pub fn apply(
    live: &Value,
    config: &Value,
    schema: Schema,
    tracked: Tracked,
    managers: &mut Vec<ManagedEntry>,
    writer: &Writer,
    force: bool,
) -> Result<Value, ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    }
    let config_set = tracked_field_set(config, schema, true, tracked)?;
    let mut merged = merge(live, config, schema);
    let last = managers
        .iter()
        .find(|e| e.is(writer, Operation::Apply))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others = managers
        .iter()
        .filter(|e| !e.is(writer, Operation::Apply))
        .fold(FieldSet::new(), |acc, e| acc.union(&e.fields));
    let kept = config_set.union(&others);
    for path in last.difference(&kept).paths() {
        if kept.covers(&path) || is_key_field(&path) || !remove_at(&mut merged, &path) {
            continue;
        }
        // A map emptied by the removal goes too, unless someone owns it.
        let mut parent = path;
        while parent.pop().is_some()
            && matches!(parent.last(), Some(PathElement::Field(_)))
            && !kept.covers(&parent)
            && value_at(&merged, &parent).is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
        {
            remove_at(&mut merged, &parent);
        }
    }
    let live_set = tracked_field_set(live, schema, false, tracked).unwrap_or_default();
    let merged_set = tracked_field_set(&merged, schema, false, tracked).unwrap_or_default();
    let changed = changed(live, &merged, &merged_set);
    let removed = removed(&live_set, &merged);
    let mut conflicts = Vec::new();
    for entry in managers.iter().filter(|e| !e.is(writer, Operation::Apply)) {
        for path in entry.fields.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: entry.display(),
                path: path_string(&path),
                field: path,
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for entry in managers
        .iter_mut()
        .filter(|e| !e.is(writer, Operation::Apply))
    {
        entry.fields = entry.fields.difference(&changed).difference(&removed);
    }
    file(managers, writer, Operation::Apply, config_set);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Schema<'static> {
        Schema::builtin(&GroupVersionKind {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
        })
    }

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "apps/v1",
            subresource: "",
            time: "2026-01-01T00:00:00Z",
        }
    }

    fn web(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": image, "args": ["a"]}]}}
            }
        })
    }

    /// What [`tracked_field_set`] must equal: the whole object's field set, then the
    /// untracked parts taken away.
    fn walked_then_dropped(value: &Value, schema: Schema, tracked: Tracked) -> FieldSet {
        let mut set = field_set(value, schema, false)
            .unwrap()
            .without(&[field("apiVersion")])
            .without(&[field("kind")]);
        for name in SERVER_SET_META {
            set = set.without(&[field("metadata"), field(name)]);
        }
        match tracked {
            Tracked::All => set,
            Tracked::AllButStatus => set.without(&[field("status")]),
            Tracked::StatusOnly => set.only(&[field("status")]),
        }
    }

    #[test]
    fn tracked_fields_skip_what_no_manager_owns_without_walking_it() {
        let mut object = web(3, "nginx");
        object["metadata"] = json!({
            "name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7",
            "labels": {"app": "web"}, "annotations": {}, "finalizers": ["a", "b"],
            "managedFields": [{"manager": "kubectl", "operation": "Apply",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
        });
        object["status"] = json!({"replicas": 3, "conditions": [
            {"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True"}]});
        for tracked in [Tracked::All, Tracked::AllButStatus, Tracked::StatusOnly] {
            let fast = tracked_field_set(&object, deployment(), false, tracked).unwrap();
            assert_eq!(
                fast.to_fields_v1(),
                walked_then_dropped(&object, deployment(), tracked).to_fields_v1(),
                "{tracked:?}"
            );
            assert!(!fast.is_empty(), "{tracked:?}");
        }
    }

    /// Checks the fieldsV1 of a configuration.
    fn check(value: Value, schema: Schema, expected: Value) {
        let set = tracked_field_set(&value, schema, true, Tracked::AllButStatus).unwrap();
        assert_eq!(set.to_fields_v1(), expected);
    }

    #[test]
    fn field_sets_follow_the_list_and_map_types_of_the_kind() {
        check(
            web(2, "nginx"),
            deployment(),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:args": {}, "f:image": {}, "f:name": {}
                    }}}}
                }
            }),
        );
        check(
            json!({"metadata": {"name": "x", "finalizers": ["a", "b"]}, "status": {"x": 1}}),
            deployment(),
            json!({"f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}}}),
        );
        let crd = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["port", "protocol"],
                      "items": {"type": "object"}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set"},
            "opts": {"type": "object", "x-kubernetes-map-type": "atomic"}
        }}}});
        check(
            json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "name": "h"}],
                             "tags": ["x"], "opts": {"a": 1}}}),
            Schema::custom(Some(&crd)),
            json!({"f:spec": {
                "f:opts": {},
                "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}}},
                "f:tags": {"v:\"x\"": {}}
            }}),
        );
    }

    #[test]
    fn bad_associative_lists_are_named() {
        let err = field_set(
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            deployment(),
            true,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            ".spec.template.spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        );
        let err = field_set(
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}}),
            deployment(),
            true,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            ".spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
        );
    }

    /// Creates `web(2, nginx)` by `creator` (an update) and returns it with its managers.
    fn created(creator: &str) -> (Value, Vec<ManagedEntry>) {
        let mut managers = Vec::new();
        let obj = web(2, "nginx");
        update(
            &json!({}),
            &obj,
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer(creator),
        );
        (obj, managers)
    }

    #[test]
    fn an_apply_changing_an_updaters_field_conflicts_unless_forced() {
        let (live, mut managers) = created("kubectl-client-side-apply");
        let err = apply(
            &live,
            &web(3, "nginx"),
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("kubectl"),
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        let merged = apply(
            &live,
            &web(3, "nginx"),
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("kubectl"),
            true,
        )
        .unwrap();
        assert_eq!(merged["spec"]["replicas"], 3);
        let csa = &managers[0];
        assert!(!csa.fields.contains(&[field("spec"), field("replicas")]));
        assert!(csa.fields.contains(&[field("spec"), field("selector")]));
        let ssa = &managers[1];
        assert_eq!(ssa.operation, Operation::Apply);
        assert!(ssa.fields.contains(&[field("spec"), field("replicas")]));
    }

    #[test]
    fn equal_values_are_shared_and_survive_one_owner_dropping_them() {
        let mut managers = Vec::new();
        let a = apply(
            &json!({}),
            &web(2, "nginx"),
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("a"),
            false,
        )
        .unwrap();
        // b applies the same replicas: no conflict, both own it.
        let b_config = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let live = apply(
            &a,
            &b_config,
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("b"),
            false,
        )
        .unwrap();
        assert!(
            managers
                .iter()
                .all(|e| e.fields.contains(&[field("spec"), field("replicas")]))
        );
        // a drops replicas (and its label): b still owns replicas, the label goes.
        let mut a2 = web(2, "nginx");
        a2["spec"].as_object_mut().unwrap().remove("replicas");
        a2["metadata"].as_object_mut().unwrap().remove("labels");
        let live = apply(
            &live,
            &a2,
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("a"),
            false,
        )
        .unwrap();
        assert_eq!(live["spec"]["replicas"], 2);
        assert!(live["metadata"].get("labels").is_none(), "{live}");
        // b drops replicas too: nobody owns it, it goes.
        let b2 = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": {"x": "y"}}});
        let live = apply(
            &live,
            &b2,
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("b"),
            false,
        )
        .unwrap();
        assert!(live["spec"].get("replicas").is_none(), "{live}");
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx"
        );
    }

    #[test]
    fn list_elements_merge_by_key_and_removed_elements_go() {
        let mut managers = Vec::new();
        let mut two = web(1, "nginx");
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "busybox"}));
        let live = apply(
            &json!({}),
            &two,
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("a"),
            false,
        )
        .unwrap();
        // Another manager changes the sidecar's image by update: it owns that field now.
        let mut edited = live.clone();
        edited["spec"]["template"]["spec"]["containers"][1]["image"] = json!("busybox:2");
        update(
            &live,
            &edited,
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("editor"),
        );
        // a drops the sidecar: the element stays, since the editor owns a field in it.
        let live = apply(
            &edited,
            &web(1, "nginx"),
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("a"),
            false,
        )
        .unwrap();
        let containers = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 2, "{live}");
        // Without the editor's field, it goes.
        let mut managers: Vec<ManagedEntry> =
            managers.into_iter().filter(|e| e.manager == "a").collect();
        let mut with_side = two.clone();
        with_side["spec"]["template"]["spec"]["containers"][1]["image"] = json!("busybox:2");
        let live = apply(
            &live,
            &with_side,
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("a"),
            false,
        )
        .unwrap();
        let live = apply(
            &live,
            &web(1, "nginx"),
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("a"),
            false,
        )
        .unwrap();
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn updates_take_changed_fields_from_appliers_and_managed_fields_round_trip() {
        let mut managers = Vec::new();
        let live = apply(
            &json!({}),
            &web(2, "nginx"),
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("a"),
            false,
        )
        .unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        scaled["status"] = json!({"replicas": 5});
        update(
            &live,
            &scaled,
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("hpa"),
        );
        let doc = write_managed_fields(&managers);
        assert_eq!(doc[1]["manager"], "hpa");
        assert_eq!(doc[1]["operation"], "Update");
        assert_eq!(doc[1]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(read_managed_fields(Some(&doc)).unwrap(), managers);
        // a re-applies replicas 2: a conflict with the hpa's update.
        let err = apply(
            &scaled,
            &web(2, "nginx"),
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("a"),
            false,
        )
        .unwrap_err();
        assert!(
            matches!(err, ApplyError::Conflicts(ref c) if c.len() == 1 && c[0].manager == "\"hpa\" using apps/v1")
        );
        // Unless a leaves replicas out: then the hpa's value stays.
        let mut no_replicas = web(2, "nginx");
        no_replicas["spec"]
            .as_object_mut()
            .unwrap()
            .remove("replicas");
        let live = apply(
            &scaled,
            &no_replicas,
            deployment(),
            Tracked::AllButStatus,
            &mut managers,
            &writer("a"),
            false,
        )
        .unwrap();
        assert_eq!(live["spec"]["replicas"], 5);
    }

    #[test]
    fn a_create_owns_the_maps_it_adds() {
        let cm = Schema::builtin(&GroupVersionKind {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
        });
        let mut managers = Vec::new();
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        update(
            &json!({"metadata": {}, "spec": {}}),
            &obj,
            cm,
            Tracked::All,
            &mut managers,
            &writer("kubectl-create"),
        );
        assert_eq!(
            managers[0].fields.to_fields_v1(),
            json!({"f:data": {".": {}, "f:a": {}}})
        );
    }

    #[test]
    fn several_conflicts_are_listed_per_manager() {
        let conflicts = vec![
            Conflict {
                manager: "\"b\"".into(),
                path: ".spec.replicas".into(),
                field: vec![],
            },
            Conflict {
                manager: "\"a\" using v1".into(),
                path: ".data.x".into(),
                field: vec![],
            },
        ];
        assert_eq!(
            conflict_message(&conflicts),
            "Apply failed with 2 conflicts: conflicts with \"a\" using v1:\n- .data.x\nconflicts with \"b\":\n- .spec.replicas"
        );
    }
}
