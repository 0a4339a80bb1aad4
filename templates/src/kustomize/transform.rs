//! The built-in transformers of one kustomization, in kustomize's order, and the output order.

use super::fields::{self, FieldSpec};
use super::kustomization::{Image, SortOptions, pairs_to_map};
use super::{Ctx, Error, Resource, metadata, patch};
use crate::source::Source;
use serde_json::{Map, Value};

/// Runs the transformers of `ctx`'s kustomization over `resources`.
pub(crate) fn run(
    source: &dyn Source,
    ctx: &Ctx,
    resources: &mut Vec<Resource>,
) -> Result<(), Error> {
    let k = ctx.k;
    let config = &ctx.config;
    let note = |resources: &mut [Resource], kind: &str, times: usize| {
        for _ in 0..times {
            metadata::note(resources, ctx.configured_in.as_deref(), kind);
        }
    };
    patch::strategic_merge_files(source, ctx, resources)?;
    let smp = usize::from(!k.patches_strategic_merge.is_empty());
    note(resources, "PatchStrategicMergeTransformer", smp);
    patch::patches(source, ctx, resources)?;
    note(resources, "PatchTransformer", k.patches.len());
    if let Some(ns) = k.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        namespace(ctx, resources, ns)?;
        note(resources, "NamespaceTransformer", 1);
    }
    if let Some(prefix) = k.name_prefix.as_deref().filter(|p| !p.is_empty()) {
        rename(resources, prefix, true, &config.name_prefix);
        note(resources, "PrefixTransformer", 1);
    }
    if let Some(suffix) = k.name_suffix.as_deref().filter(|s| !s.is_empty()) {
        rename(resources, suffix, false, &config.name_suffix);
        note(resources, "SuffixTransformer", 1);
    }
    let common_labels: Vec<FieldSpec> = fields::common_labels()
        .iter()
        .chain(&config.common_labels)
        .cloned()
        .collect();
    for label in &k.labels {
        let mut specs: Vec<FieldSpec> = label.fields.iter().map(|f| f.to_spec()).collect();
        specs.extend(config.labels.iter().cloned());
        if label.include_selectors {
            specs.extend(common_labels.iter().cloned());
        } else {
            if label.include_templates {
                specs.extend(fields::template_labels().iter().cloned());
                specs.extend(config.template_labels.iter().cloned());
            }
            specs.push(fields::template_labels()[0].clone());
        }
        set_pairs(resources, &specs, &pairs_to_map(&label.pairs));
        note(resources, "LabelTransformer", 1);
    }
    if !k.common_labels.is_empty() || !k.labels.is_empty() {
        if !k.common_labels.is_empty() {
            set_pairs(resources, &common_labels, &pairs_to_map(&k.common_labels));
        }
        note(resources, "LabelTransformer", 1);
    }
    if !k.common_annotations.is_empty() {
        let specs: Vec<FieldSpec> = fields::common_annotations()
            .iter()
            .chain(&config.common_annotations)
            .cloned()
            .collect();
        set_pairs(resources, &specs, &pairs_to_map(&k.common_annotations));
        note(resources, "AnnotationsTransformer", 1);
    }
    patch::json6902_entries(source, ctx, resources)?;
    note(
        resources,
        "PatchJson6902Transformer",
        k.patches_json6902.len(),
    );
    let replica_specs: Vec<&FieldSpec> =
        fields::replicas().iter().chain(&config.replicas).collect();
    for replica in &k.replicas {
        for r in resources.iter_mut() {
            if !r.all_names().any(|(n, _)| n == replica.name) {
                continue;
            }
            for spec in &replica_specs {
                if spec.selects(r.api_version(), r.kind()) {
                    fields::visit(
                        &mut r.value,
                        &fields::segments(&spec.path),
                        spec.create,
                        &mut |v| *v = Value::from(replica.count),
                    );
                }
            }
        }
        note(resources, "ReplicaCountTransformer", 1);
    }
    for image in &k.images {
        images(resources, image, &config.images);
        note(resources, "ImageTagTransformer", 1);
    }
    super::replacements::run(source, ctx, resources)?;
    note(
        resources,
        "ReplacementTransformer",
        usize::from(!k.replacements.is_empty()),
    );
    Ok(())
}

/// Kinds that have no namespace.
pub(crate) fn is_cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "Namespace"
            | "Node"
            | "PersistentVolume"
            | "StorageClass"
            | "CustomResourceDefinition"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "APIService"
            | "PriorityClass"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "CSIDriver"
            | "CSINode"
            | "IngressClass"
            | "RuntimeClass"
            | "PodSecurityPolicy"
            | "VolumeAttachment"
            | "CertificateSigningRequest"
            | "ComponentStatus"
            | "FlowSchema"
            | "PriorityLevelConfiguration"
            | "TokenReview"
            | "SelfSubjectAccessReview"
            | "SelfSubjectRulesReview"
            | "SubjectAccessReview"
    )
}

fn namespace(ctx: &Ctx, resources: &mut [Resource], ns: &str) -> Result<(), Error> {
    for r in resources.iter_mut() {
        r.store_previous();
        let kind = r.kind().to_string();
        if !r.is_cluster_scoped() {
            r.set_meta("namespace", ns);
        }
        if kind == "Namespace" && r.api_version() == "v1" {
            r.set_meta("name", ns);
        }
        if (kind == "RoleBinding" || kind == "ClusterRoleBinding")
            && let Some(subjects) = r.value.get_mut("subjects").and_then(Value::as_array_mut)
        {
            for s in subjects {
                if s.get("name").and_then(Value::as_str) == Some("default")
                    && let Some(o) = s.as_object_mut()
                {
                    o.insert("namespace".into(), Value::String(ns.into()));
                }
            }
        }
        if kind == "APIService" {
            let path = fields::segments("spec/service/namespace");
            fields::visit(&mut r.value, &path, true, &mut |v| {
                *v = Value::String(ns.into())
            });
        }
        if kind == "CustomResourceDefinition" {
            let path = fields::segments("spec/conversion/webhook/clientConfig/service/namespace");
            fields::visit(&mut r.value, &path, false, &mut |v| {
                *v = Value::String(ns.into())
            });
        }
    }
    let mut ids = super::Ids::new();
    for r in resources.iter() {
        if !ids.insert(r.key()) {
            return Err(ctx.invalid(
                "namespace",
                None,
                format!("namespace transformation produces ID conflict: {}", r.id()),
            ));
        }
    }
    Ok(())
}

fn rename(resources: &mut [Resource], affix: &str, prefix: bool, extra: &[FieldSpec]) {
    for r in resources.iter_mut() {
        let skip = matches!(r.kind(), "CustomResourceDefinition" | "Namespace")
            || (r.kind() == "APIService" && r.group() == "apiregistration.k8s.io");
        if skip {
            continue;
        }
        r.store_previous();
        let name = if prefix {
            r.prefixes.push(affix.to_string());
            format!("{affix}{}", r.name())
        } else {
            r.suffixes.push(affix.to_string());
            format!("{}{affix}", r.name())
        };
        r.set_meta("name", &name);
        let (api_version, kind) = (r.api_version().to_string(), r.kind().to_string());
        for spec in extra.iter().filter(|s| s.selects(&api_version, &kind)) {
            if spec.path == "metadata/name" {
                continue;
            }
            fields::visit(
                &mut r.value,
                &fields::segments(&spec.path),
                spec.create,
                &mut |v| {
                    if let Value::String(s) = v {
                        *s = if prefix {
                            format!("{affix}{s}")
                        } else {
                            format!("{s}{affix}")
                        };
                    }
                },
            );
        }
    }
}

fn set_pairs(resources: &mut [Resource], specs: &[FieldSpec], pairs: &Map<String, Value>) {
    for r in resources.iter_mut() {
        let (api_version, kind) = (r.api_version().to_string(), r.kind().to_string());
        for spec in specs.iter().filter(|s| s.selects(&api_version, &kind)) {
            fields::visit(
                &mut r.value,
                &fields::segments(&spec.path),
                spec.create,
                &mut |v| {
                    if v.is_null() {
                        *v = Value::Object(Map::new());
                    }
                    if let Some(map) = v.as_object_mut() {
                        for (k, val) in pairs {
                            map.insert(k.clone(), val.clone());
                        }
                    }
                },
            );
        }
    }
}

/// Splits an image reference into name, tag and digest.
fn split_image(image: &str) -> (String, String, String) {
    let slash = image.find('/').filter(|i| *i > 0).unwrap_or(0);
    let search = &image[slash..];
    let at = search.find('@').map(|i| i + slash);
    let colon = search.find(':').map(|i| i + slash);
    match (at, colon) {
        (None, None) => (image.into(), String::new(), String::new()),
        (Some(at), c) if c.is_none_or(|c| at < c) => {
            (image[..at].into(), String::new(), image[at + 1..].into())
        }
        (Some(at), Some(colon)) => (
            image[..colon].into(),
            image[colon + 1..at].into(),
            image[at + 1..].into(),
        ),
        (None, Some(colon)) => (
            image[..colon].into(),
            image[colon + 1..].into(),
            String::new(),
        ),
        (Some(_), None) => (image.into(), String::new(), String::new()),
    }
}

fn update_image(value: &mut Value, image: &Image, pattern: &regex::Regex) {
    let Some(current) = value.as_str() else {
        return;
    };
    if !pattern.is_match(current) {
        return;
    }
    let (mut name, mut tag, mut digest) = split_image(current);
    if !image.new_name.is_empty() {
        name = image.new_name.clone();
    }
    match (image.new_tag.as_str(), image.digest.as_str()) {
        ("", "") => {
            if !image.tag_suffix.is_empty() {
                tag.push_str(&image.tag_suffix);
                digest.clear();
            }
        }
        (t, "") => {
            tag = t.into();
            digest.clear();
        }
        ("", d) => {
            tag.clear();
            digest = d.into();
        }
        (t, d) => {
            tag = t.into();
            digest = d.into();
        }
    }
    if !tag.is_empty() {
        name = format!("{name}:{tag}");
    }
    if !digest.is_empty() {
        name = format!("{name}@{digest}");
    }
    *value = Value::String(name);
}

fn walk_containers(node: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    match node {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                walk_containers(child, f);
                if (key == "containers" || key == "initContainers")
                    && let Value::Array(items) = child
                {
                    for item in items {
                        if let Some(image) = item.get_mut("image") {
                            f(image);
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                walk_containers(item, f);
            }
        }
        _ => {}
    }
}

fn images(resources: &mut [Resource], image: &Image, extra: &[FieldSpec]) {
    let pattern = format!(
        "^{}(:[a-zA-Z0-9_.{{}}-]*)?(@[a-zA-Z0-9]+([.+_-][a-zA-Z0-9]+)*:[a-zA-Z0-9_.{{}}-]*)?$",
        image.name
    );
    let Ok(pattern) = regex::Regex::new(&pattern) else {
        return;
    };
    for r in resources.iter_mut() {
        if r.kind() == "CustomResourceDefinition" {
            continue;
        }
        walk_containers(&mut r.value, &mut |v| update_image(v, image, &pattern));
        for spec in fields::image_volumes().iter().chain(extra) {
            if !spec.selects(r.api_version(), r.kind()) {
                continue;
            }
            fields::visit(
                &mut r.value,
                &fields::segments(&spec.path),
                false,
                &mut |v| update_image(v, image, &pattern),
            );
        }
    }
}

const ORDER_FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const ORDER_LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Orders the output: kustomize's legacy order by default, or as accumulated with `fifo`.
pub(crate) fn sort(
    resources: &mut [Resource],
    options: Option<&SortOptions>,
) -> Result<(), String> {
    let (first, last): (Vec<String>, Vec<String>) = match options {
        None => (to_strings(ORDER_FIRST), to_strings(ORDER_LAST)),
        Some(o) if o.order == "fifo" => {
            if o.legacy_sort_options.is_some() {
                return Err("sortOptions.legacySortOptions is set but the order is fifo".into());
            }
            return Ok(());
        }
        Some(o) if o.order == "legacy" => match &o.legacy_sort_options {
            Some(l) => (l.order_first.clone(), l.order_last.clone()),
            None => (to_strings(ORDER_FIRST), to_strings(ORDER_LAST)),
        },
        Some(o) => {
            return Err(format!(
                "sortOptions.order must be fifo or legacy, found {:?}",
                o.order
            ));
        }
    };
    let rank = |kind: &str| -> i64 {
        if let Some(i) = first.iter().position(|k| k == kind) {
            return i as i64 - first.len() as i64;
        }
        if let Some(i) = last.iter().position(|k| k == kind) {
            return 1 + i as i64;
        }
        0
    };
    let gvk_string = |r: &Resource| {
        let (g, v) = apimachinery::registry::split_api_version(r.api_version());
        let or = |s: &str, d: &str| {
            if s.is_empty() {
                d.to_string()
            } else {
                s.to_string()
            }
        };
        format!("{}_{}_{}", or(g, "~G"), or(v, "~V"), or(r.kind(), "~K"))
    };
    let id_string = |r: &Resource| {
        let ns = if r.namespace().is_empty() {
            "~X"
        } else {
            r.namespace()
        };
        let name = if r.name().is_empty() { "~N" } else { r.name() };
        format!("{ns}|{name}")
    };
    resources.sort_by(|a, b| {
        let (ga, gb) = (gvk_string(a), gvk_string(b));
        if ga != gb {
            let (ra, rb) = (rank(a.kind()), rank(b.kind()));
            if ra != rb {
                return ra.cmp(&rb);
            }
            if a.kind() == "Namespace"
                && b.kind() == "Namespace"
                && (a.group().is_empty() || b.group().is_empty())
            {
                return gb.cmp(&ga);
            }
            return ga.cmp(&gb);
        }
        id_string(a).cmp(&id_string(b))
    });
    Ok(())
}

fn to_strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(image: &str, expected: (&str, &str, &str)) {
        let (n, t, d) = split_image(image);
        assert_eq!((n.as_str(), t.as_str(), d.as_str()), expected, "{image}");
    }

    #[test]
    fn image_references_split_into_name_tag_and_digest() {
        check("nginx", ("nginx", "", ""));
        check("nginx:1.2", ("nginx", "1.2", ""));
        check("registry:5000/web:1.0", ("registry:5000/web", "1.0", ""));
        check("web@sha256:abc", ("web", "", "sha256:abc"));
        check("web:1@sha256:abc", ("web", "1", "sha256:abc"));
    }
}
