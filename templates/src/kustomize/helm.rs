//! `helmCharts` (kustomize's HelmChartInflationGenerator, `kustomize build --enable-helm`):
//! each entry's chart is rendered by gitplane's Helm renderer (`crate::helm`) with the
//! arguments kustomize would give `helm template`, and its objects join the kustomization after
//! the other generators' (helm's stream order: CRDs when asked, manifests, hooks).
//!
//! Where the chart is: `<chartHome>/<name>`, or `<chartHome>/<name>-<version>/<name>` when the
//! entry names both a `repo` and a `version` (kustomize's layout after `helm pull --untar`);
//! `chartHome` is `helmGlobals.chartHome`, else `charts`, relative to the kustomization.
//! kustomize downloads a missing chart from `repo`; gitplane never reaches the network because a
//! repository says so, so a chart that is not vendored there is an error saying where to put it.
//!
//! Values, as kustomize passes them: `valuesFile` (else the chart's own `values.yaml`), with
//! `valuesInline` merged as `valuesMerge` says (`override`, the default: inline wins, a `null`
//! changes nothing; `merge`: the file wins; `replace`: inline only), then
//! `additionalValuesFiles`. The release is `releaseName`, or the name `nameTemplate` makes (a Go
//! template run with no data, as helm's `--name-template`; both set is helm's error). With
//! neither, kustomize passes `--generate-name` (a random name); gitplane uses the chart's name
//! so renders do not churn.

use super::{Ctx, Error, Resource};
use crate::chart::{Options, ValuesFile};
use crate::helm::{self, Settings};
use crate::source::{self, EntryKind, Source};
use serde::Deserialize;
use serde_json::Value;

/// An entry of `helmCharts`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HelmChart {
    pub name: String,
    pub version: String,
    pub repo: String,
    pub release_name: String,
    pub name_template: String,
    pub namespace: String,
    pub values_file: String,
    pub additional_values_files: Vec<String>,
    pub values_inline: Option<Value>,
    pub values_merge: String,
    #[serde(rename = "includeCRDs")]
    pub include_crds: bool,
    pub skip_tests: bool,
    pub skip_hooks: bool,
    pub api_versions: Vec<String>,
    pub kube_version: String,
}

/// `helmGlobals`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HelmGlobals {
    pub chart_home: String,
    pub config_home: String,
}

/// Adds the objects of every `helmCharts` entry of one kustomization to `resources`.
pub(crate) fn run(
    source: &dyn Source,
    ctx: &Ctx,
    resources: &mut Vec<Resource>,
    ids: &mut super::Ids,
) -> Result<usize, Error> {
    let before = resources.len();
    for (index, entry) in ctx.k.helm_charts.iter().enumerate() {
        let line = super::locate_item(&ctx.text, "helmCharts", index);
        let at = |message: String| Error::Invalid {
            file: ctx.file.clone(),
            line,
            message: format!("helmCharts[{index}] ({}): {message}", entry.name),
        };
        if entry.name.is_empty() {
            return Err(at("name: Required value".into()));
        }
        let home = ctx
            .k
            .helm_globals
            .as_ref()
            .map(|g| g.chart_home.as_str())
            .filter(|h| !h.is_empty())
            .unwrap_or("charts");
        let home = source::join(&ctx.dir, home).map_err(|e| at(e.to_string()))?;
        let dir = if !entry.version.is_empty() && !entry.repo.is_empty() {
            format!("{}-{}/{}", entry.name, entry.version, entry.name)
        } else {
            entry.name.clone()
        };
        let dir = source::join(&home, &dir).map_err(|e| at(e.to_string()))?;
        if !helm::is_helm_chart(source, &dir) {
            let how = if entry.repo.is_empty() {
                String::new()
            } else {
                format!(
                    "; gitplane never downloads a chart a repository names: vendor it with `helm pull --untar --untardir {} --repo {} {}{}`",
                    source::parent(&dir),
                    entry.repo,
                    entry.name,
                    if entry.version.is_empty() {
                        String::new()
                    } else {
                        format!(" --version {}", entry.version)
                    }
                )
            };
            return Err(at(format!("no Helm chart at {dir}{how}")));
        }
        let release = match (
            entry.release_name.is_empty(),
            entry.name_template.is_empty(),
        ) {
            (true, true) => entry.name.clone(),
            (false, true) => entry.release_name.clone(),
            (true, false) => helm::name_template(&entry.name_template)
                .map_err(|m| at(format!("nameTemplate: {m}")))?,
            (false, false) => {
                return Err(at(
                    "nameTemplate: cannot set --name-template and also specify a name (releaseName)"
                        .into(),
                ));
            }
        };
        let options = Options {
            release_name: Some(release),
            namespace: (!entry.namespace.is_empty()).then(|| entry.namespace.clone()),
            values_files: values_files(source, ctx, entry, &dir, &at)?,
            values: Vec::new(),
            set: Vec::new(),
        };
        let settings = Settings {
            kube_version: (!entry.kube_version.is_empty()).then(|| entry.kube_version.clone()),
            api_versions: entry.api_versions.clone(),
            include_crds: entry.include_crds,
            skip_tests: entry.skip_tests,
            ..Settings::default()
        };
        let out = helm::render(source, &dir, &options, &settings)
            .map_err(|e| Error::Helm(Box::new(e)))?;
        let keep = if entry.skip_hooks {
            out.release_len
        } else {
            out.manifests.len()
        };
        let prefix = source::parent(&dir);
        for m in &out.manifests[..keep] {
            let file = source::join(prefix, &m.source).unwrap_or_else(|_| m.source.clone());
            for r in super::load_file(&file, &m.content)? {
                if !ids.insert(r.key()) {
                    return Err(at(format!(
                        "may not add resource with an already registered id: {}",
                        r.id()
                    )));
                }
                resources.push(r);
            }
        }
    }
    Ok(resources.len() - before)
}

/// The values files kustomize hands `helm template` for `entry`.
fn values_files(
    source: &dyn Source,
    ctx: &Ctx,
    entry: &HelmChart,
    chart_dir: &str,
    at: &dyn Fn(String) -> Error,
) -> Result<Vec<ValuesFile>, Error> {
    let mut files = Vec::new();
    let base = if entry.values_file.is_empty() {
        let path = source::join(chart_dir, "values.yaml").map_err(|e| at(e.to_string()))?;
        (source.kind(&path) == Some(EntryKind::File))
            .then(|| read(source, &path, at))
            .transpose()?
    } else {
        Some(ctx.read(source, "helmCharts", &entry.values_file)?)
    };
    let inline = entry
        .values_inline
        .as_ref()
        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()));
    match (base, inline) {
        (base, Some(inline)) => {
            let from_file = match &base {
                Some((path, text)) => {
                    crate::yaml::parse_value(path, text, crate::yaml::Dialect::Kubectl)?
                }
                None => Value::Null,
            };
            let merged = match entry.values_merge.as_str() {
                "" | "override" => overlay(from_file, inline, true),
                "merge" => overlay(from_file, inline, false),
                "replace" => inline.clone(),
                other => {
                    return Err(at(format!(
                        "valuesMerge: {other:?} is none of override, merge, replace"
                    )));
                }
            };
            files.push(ValuesFile {
                name: format!("{} (helmCharts {} valuesInline)", ctx.file, entry.name),
                text: serde_json::to_string(&merged).unwrap_or_default(),
            });
        }
        (Some((name, text)), None) => files.push(ValuesFile { name, text }),
        (None, None) => {}
    }
    for f in &entry.additional_values_files {
        let (name, text) = ctx.read(source, "helmCharts", f)?;
        files.push(ValuesFile { name, text });
    }
    Ok(files)
}

fn read(
    source: &dyn Source,
    path: &str,
    at: &dyn Fn(String) -> Error,
) -> Result<(String, String), Error> {
    let bytes = source.read(path).map_err(|e| at(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| at(format!("{path}: not UTF-8 text")))?;
    Ok((path.to_string(), text))
}

/// mergo's merge of `inline` into `file` as kustomize calls it: maps merge key by key; with
/// `overwrite` inline's values win (a `null` never does), without it only missing keys are
/// added.
fn overlay(file: Value, inline: &Value, overwrite: bool) -> Value {
    match (file, inline) {
        (Value::Object(mut dst), Value::Object(src)) => {
            for (k, v) in src {
                let merged = match dst.remove(k) {
                    None => v.clone(),
                    Some(d @ Value::Object(_)) if v.is_object() => overlay(d, v, overwrite),
                    Some(_) if overwrite && !v.is_null() => v.clone(),
                    Some(d) => d,
                };
                dst.insert(k.clone(), merged);
            }
            Value::Object(dst)
        }
        (Value::Null, v) => v.clone(),
        (d, _) => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inline_values_overlay_as_kustomize_merges_them() {
        let file = json!({"a": 1, "m": {"x": 1, "y": 2}, "l": [1, 2], "s": "x", "n": 3});
        let inline = json!({"a": 0, "m": {"y": 3, "z": 4}, "l": [9], "s": "", "n": null});
        assert_eq!(
            overlay(file.clone(), &inline, true),
            json!({"a": 0, "m": {"x": 1, "y": 3, "z": 4}, "l": [9], "s": "", "n": 3})
        );
        assert_eq!(
            overlay(file, &inline, false),
            json!({"a": 1, "m": {"x": 1, "y": 2, "z": 4}, "l": [1, 2], "s": "x", "n": 3})
        );
    }
}
