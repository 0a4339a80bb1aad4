//! Go templates over a JSON document, as Argo CD's ApplicationSet controller renders a
//! `goTemplate: true` template.
//!
//! Every string of the document (object keys included) that holds `{{` is one Go
//! `text/template` executed with the parameters as `.` (a nested map: `{{ .path.basename }}`,
//! `{{ index .metadata.labels "env" }}`); other strings, numbers and booleans stay as they are.
//! The functions are sprig's (through Helm's library, which has them) without Helm's own
//! (`include`, `tpl`, `required`, `fail`, `lookup`, `toToml`, `.Files`) and with Argo CD's
//! `normalize`, as Argo CD's `sprig.GenericFuncMap()` minus `env`, `expandenv` and
//! `getHostByName`. A missing key prints `<no value>` unless the options hold
//! `missingkey=error`.

use std::rc::Rc;

use serde_json::{Map, Value};

use crate::helm::funcs::Helm;
use crate::helm::gotmpl::Value as GoValue;
use crate::helm::gotmpl::exec::{CallError, Exec, Library, Set};

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// An option of `goTemplateOptions` is not one Go's `Option` takes.
    #[error(
        "spec.goTemplateOptions[{index}]: Unsupported value: {option:?}: supported values: \"missingkey=default\", \"missingkey=invalid\", \"missingkey=zero\", \"missingkey=error\""
    )]
    Option {
        /// Its index.
        index: usize,
        /// The option as written.
        option: String,
    },
    /// A string of the document failed to parse or execute.
    #[error("{field}: {message}")]
    Template {
        /// The field holding the template (`spec.template.metadata.name`).
        field: String,
        /// Go's wording, with line and column.
        message: String,
    },
}

/// How a template treats a map key that is not there (Go's `missingkey` option).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissingKey {
    /// `<no value>` (`default`, `invalid`, and `zero`, which is the same for Argo CD's
    /// `map[string]any` parameters).
    #[default]
    NoValue,
    /// An error naming the key (`error`).
    Error,
}

/// Rendering options, from `goTemplateOptions`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The `missingkey` option.
    pub missing_key: MissingKey,
}

impl Options {
    /// Reads Argo CD's `goTemplateOptions` (Go's `template.Option` strings).
    pub fn parse(options: &[String]) -> Result<Options, Error> {
        let mut out = Options::default();
        for (index, option) in options.iter().enumerate() {
            out.missing_key = match option.as_str() {
                "missingkey=default" | "missingkey=invalid" | "missingkey=zero" => {
                    MissingKey::NoValue
                }
                "missingkey=error" => MissingKey::Error,
                _ => {
                    return Err(Error::Option {
                        index,
                        option: option.clone(),
                    });
                }
            };
        }
        Ok(out)
    }
}

/// The functions an ApplicationSet template may call.
struct Functions;

impl Library for Functions {
    fn call(
        &self,
        exec: &mut Exec<'_>,
        name: &str,
        args: Vec<GoValue>,
    ) -> Option<Result<GoValue, CallError>> {
        match name {
            "normalize" => Some(match args.as_slice() {
                [GoValue::Str(s)] => Ok(GoValue::str(normalize(s))),
                _ => Err(CallError::Message(format!(
                    "wrong number of args for normalize: want 1 string got {}",
                    args.len()
                ))),
            }),
            "include" | "tpl" | "required" | "fail" | "lookup" | "toToml" => None,
            _ if name.starts_with("Files.") || name.starts_with("APIVersions.") => None,
            _ => Helm.call(exec, name, args),
        }
    }
}

/// Argo CD's `normalize` (`SanitizeName`): lowercase, anything but `[-a-z0-9.]` a `-`, at most
/// 253 characters, no `-` or `.` at either end.
pub fn normalize(name: &str) -> String {
    let lowered: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(253)
        .collect();
    lowered.trim_matches(['-', '.']).to_string()
}

/// Renders every string of `document` (at `field`, for messages) with `params` as `.`.
pub fn render(
    document: &Value,
    params: &Value,
    options: Options,
    field: &str,
) -> Result<Value, Error> {
    let data = GoValue::from_json(params);
    walk(document, &data, options, field)
}

fn walk(v: &Value, data: &GoValue, options: Options, field: &str) -> Result<Value, Error> {
    Ok(match v {
        Value::String(s) => Value::String(render_str(s, data, options, field)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| walk(item, data, options, &format!("{field}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, item) in m {
                let key = render_str(k, data, options, &format!("{field}.{k}"))?;
                let item = walk(item, data, options, &format!("{field}.{k}"))?;
                out.insert(key, item);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn render_str(text: &str, data: &GoValue, options: Options, field: &str) -> Result<String, Error> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let fail = |e: crate::helm::gotmpl::Error| Error::Template {
        field: field.to_string(),
        message: e.message,
    };
    let mut set = Set::default();
    set.add("", "", text).map_err(fail)?;
    let mut exec = Exec::new(Rc::new(set), &Functions)
        .missing_key_error(options.missing_key == MissingKey::Error);
    exec.execute("", data.clone()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(template: &str, options: &[&str], expected: Result<&str, &str>) {
        let params = json!({
            "name": "east",
            "path": {"path": "apps/web", "basename": "web", "segments": ["apps", "web"]},
            "metadata": {"labels": {"env": "prod"}},
            "replicas": 3,
        });
        let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        let got = Options::parse(&options)
            .and_then(|o| render(&json!(template), &params, o, "spec.template.x"))
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .map_err(|e| e.to_string());
        assert_eq!(
            got.as_deref().map_err(String::as_str),
            expected,
            "{template}"
        );
    }

    #[test]
    fn parameters_are_a_nested_map() {
        check("{{ .name }}-{{ .path.basename }}", &[], Ok("east-web"));
        check("{{ index .metadata.labels \"env\" }}", &[], Ok("prod"));
        check("{{ index .path.segments 0 }}", &[], Ok("apps"));
        check("{{ .replicas }}", &[], Ok("3"));
        check("no template", &[], Ok("no template"));
    }

    #[test]
    fn sprig_and_argo_functions_are_there_and_helm_ones_are_not() {
        check("{{ .name | upper }}", &[], Ok("EAST"));
        check("{{ normalize \"My_App.\" }}", &[], Ok("my-app"));
        check("{{ default \"x\" .nothing }}", &[], Ok("x"));
        check(
            "{{ include \"x\" . }}",
            &[],
            Err(
                "spec.template.x: template: :1:3: executing \"\" at <include \"x\" .>: \
                 function \"include\" not defined",
            ),
        );
    }

    #[test]
    fn a_missing_key_prints_no_value_unless_missingkey_is_error() {
        check("{{ .nope }}", &[], Ok("<no value>"));
        check("{{ .nope }}", &["missingkey=zero"], Ok("<no value>"));
        check(
            "{{ .nope }}",
            &["missingkey=error"],
            Err(
                "spec.template.x: template: :1:3: executing \"\" at <.nope>: map has no entry \
                 for key \"nope\"",
            ),
        );
        check(
            "{{ .path.nope }}",
            &["missingkey=error"],
            Err(
                "spec.template.x: template: :1:3: executing \"\" at <.path.nope>: map has no \
                 entry for key \"nope\"",
            ),
        );
        check(
            "{{ .x }}",
            &["missingkey=maybe"],
            Err(
                "spec.goTemplateOptions[0]: Unsupported value: \"missingkey=maybe\": supported \
                 values: \"missingkey=default\", \"missingkey=invalid\", \"missingkey=zero\", \
                 \"missingkey=error\"",
            ),
        );
    }

    #[test]
    fn keys_are_rendered_and_errors_name_the_field() {
        let doc = json!({"labels": {"{{ .name }}": "yes"}, "n": 1, "list": ["{{ .nope"]});
        let got = render(
            &doc,
            &json!({"name": "e"}),
            Options::default(),
            "spec.template",
        );
        assert_eq!(
            got.map_err(|e| match e {
                Error::Template { field, .. } => field,
                other => other.to_string(),
            }),
            Err("spec.template.list[0]".to_string())
        );
        let doc = json!({"labels": {"{{ .name }}": "yes"}, "n": 1});
        let got = render(
            &doc,
            &json!({"name": "e"}),
            Options::default(),
            "spec.template",
        );
        assert_eq!(got, Ok(json!({"labels": {"e": "yes"}, "n": 1})));
    }
}
