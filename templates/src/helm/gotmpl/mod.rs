//! A Go `text/template` engine: the language Helm charts are written in.
//!
//! - [`parse`]: lexer and parser, source text to [`parse::Tree`]s.
//! - [`exec`]: the executor, Go's semantics for truth, comparison, `range` over maps in key
//!   order, variables, `break`/`continue`, `template`/`block`, and Go's `fmt` printing of
//!   values (floats as `%v` prints them: `1e+07`).
//! - this file: the dynamic [`Value`] and its Go printing, and the engine's error.
//!
//! Functions beyond Go's built-ins come from a [`exec::Library`] (Helm's and sprig's live in
//! `helm::funcs`).

pub mod exec;
pub mod parse;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A template failed to parse or execute.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The template file at fault.
    pub file: String,
    /// The 1-based line.
    pub line: usize,
    /// Go's wording, with file, line and column.
    pub message: String,
}

/// A map shared by reference, as Go's maps are (`set` mutates what every holder sees).
pub type Map = Rc<RefCell<BTreeMap<String, Value>>>;

/// The files of a chart, as `.Files` offers them.
pub type Files = Rc<BTreeMap<String, Vec<u8>>>;

/// A value as a template sees it (Go's `interface{}` holding the types Helm produces).
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// `nil` (also a missing map key).
    #[default]
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int` (literals, `len`, `int`, …).
    Int(i64),
    /// `float64` (every number read from YAML or JSON).
    Float(f64),
    /// `string`.
    Str(Rc<str>),
    /// `[]interface{}`.
    List(Rc<Vec<Value>>),
    /// `map[string]interface{}`.
    Map(Map),
    /// `.Files` (or the result of `.Files.Glob`).
    Files(Files),
    /// `.Capabilities.APIVersions`.
    ApiVersions(Rc<Vec<String>>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<Rc<str>>) -> Value {
        Value::Str(s.into())
    }

    /// A new map value.
    pub fn map(m: BTreeMap<String, Value>) -> Value {
        Value::Map(Rc::new(RefCell::new(m)))
    }

    /// A list value.
    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Rc::new(v))
    }

    /// Go's truth: false, 0, nil, and empty strings, lists and maps are false.
    pub fn truth(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.borrow().is_empty(),
            Value::Files(f) => !f.is_empty(),
            Value::ApiVersions(_) => true,
        }
    }

    /// Go's `reflect.Kind` name (`kindIs`).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) | Value::Files(_) => "map",
            Value::ApiVersions(_) => "slice",
        }
    }

    /// Go's type name (`typeOf`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
            Value::Files(_) => "chart.Files",
            Value::ApiVersions(_) => "chartutil.VersionSet",
        }
    }

    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A deep copy (maps are copied, not shared).
    pub fn deep_copy(&self) -> Value {
        match self {
            Value::List(l) => Value::list(l.iter().map(Value::deep_copy).collect()),
            Value::Map(m) => Value::map(
                m.borrow()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.deep_copy()))
                    .collect(),
            ),
            v => v.clone(),
        }
    }

    /// Converts from JSON; numbers become `float64` as in Helm.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Value::str(s.as_str()),
            serde_json::Value::Array(a) => Value::list(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to JSON (integral floats become JSON integers, as Go's encoder prints them).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Nil => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    serde_json::Value::from(*f as i64)
                } else {
                    serde_json::Number::from_f64(*f)
                        .map(serde_json::Value::Number)
                        .unwrap_or(serde_json::Value::Null)
                }
            }
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json).collect()),
            Value::Map(m) => serde_json::Value::Object(
                m.borrow()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
            Value::Files(f) => serde_json::Value::Object(
                f.keys()
                    .map(|k| (k.clone(), serde_json::Value::Null))
                    .collect(),
            ),
            Value::ApiVersions(a) => {
                serde_json::Value::Array(a.iter().map(|s| s.as_str().into()).collect())
            }
        }
    }
}

/// Go's `%v` for a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): `3`, `0.5`, `1e+07`.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}`.
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    // strconv's shortest 'g': exponent form below 1e-4 and from 1e+06 (precision 6).
    if !(-4..6).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let es = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{es}{:02}", exp.abs());
    }
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("{sign}0.{zeros}{digits}");
    }
    let exp = exp as usize;
    if digits.len() > exp + 1 {
        format!("{sign}{}.{}", &digits[..=exp], &digits[exp + 1..])
    } else {
        format!("{sign}{digits}{}", "0".repeat(exp + 1 - digits.len()))
    }
}

/// Go's `fmt.Sprint` of a value (`%v`); `nil` prints `<nil>`.
pub fn go_print(v: &Value) -> String {
    let mut out = String::new();
    write_go(&mut out, v, true);
    out
}

fn write_go(out: &mut String, v: &Value, top: bool) {
    match v {
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&go_float(*f)),
        Value::Str(s) => out.push_str(s),
        Value::List(l) => {
            out.push('[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_go(out, x, false);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push_str("map[");
            for (i, (k, x)) in m.borrow().iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_go(out, x, false);
            }
            out.push(']');
        }
        Value::Files(f) => {
            out.push_str("map[");
            for (i, (k, x)) in f.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push_str(":[");
                let bytes: Vec<String> = x.iter().map(u8::to_string).collect();
                out.push_str(&bytes.join(" "));
                out.push(']');
            }
            out.push(']');
        }
        Value::ApiVersions(a) => {
            out.push('[');
            out.push_str(&a.join(" "));
            out.push(']');
        }
    }
    let _ = top;
}

#[cfg(test)]
mod tests {
    use super::exec::{CallError, Exec, Library, Set};
    use super::*;

    struct NoFunctions;

    impl Library for NoFunctions {
        fn call(
            &self,
            _: &mut Exec<'_>,
            _: &str,
            _: Vec<Value>,
        ) -> Option<Result<Value, CallError>> {
            None
        }
    }

    fn run(text: &str, data: serde_json::Value) -> Result<String, String> {
        let mut set = Set::default();
        set.add("t", "t", text).map_err(|e| e.message)?;
        let lib = NoFunctions;
        let mut exec = Exec::new(Rc::new(set), &lib);
        exec.execute("t", Value::from_json(&data))
            .map_err(|e| e.message)
    }

    #[test]
    fn go_template_semantics() {
        let data = serde_json::json!({
            "n": 10000000, "f": 1.5, "i": 3, "s": "x", "l": ["a", "b", "c"],
            "m": {"b": 2, "a": 1}, "z": null, "e": ""
        });
        let table = [
            (
                "{{ .n }} {{ .f }} {{ .i }} {{ 3 }} {{ 1.0 }}",
                "1e+07 1.5 3 3 1",
            ),
            ("{{ .missing }}|{{ .z }}", "<no value>|<no value>"),
            (
                "{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}",
                "a=1;b=2;",
            ),
            (
                "{{ range $i, $v := .l }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $v }}{{ end }}",
                "ac",
            ),
            (
                "{{ range .l }}{{ if eq . \"b\" }}{{ break }}{{ end }}{{ . }}{{ end }}",
                "a",
            ),
            ("{{ range .missing }}x{{ else }}empty{{ end }}", "empty"),
            ("{{ if .z }}a{{ else if .s }}b{{ else }}c{{ end }}", "b"),
            (
                "{{ with .s }}{{ . }}{{ end }}{{ with .z }}no{{ else with .f }}{{ . }}{{ end }}",
                "x1.5",
            ),
            ("a  {{- .s -}}  b", "axb"),
            ("{{/* note */ -}}  x", "x"),
            (
                "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
                "2",
            ),
            (
                "{{ define \"d\" }}[{{ . }}]{{ end }}{{ template \"d\" .s }}",
                "[x]",
            ),
            ("{{ block \"b\" .i }}<{{ . }}>{{ end }}", "<3>"),
            (
                "{{ and 1 0 }} {{ or 0 \"\" }} {{ not .e }} {{ and .s .i }}",
                "0  true 3",
            ),
            (
                "{{ eq .s \"x\" \"y\" }} {{ ne .i 3.0 }} {{ lt 1 2 }} {{ ge .f 1.5 }}",
                "true false true true",
            ),
            ("{{ eq .z nil }} {{ eq .s nil }}", "true false"),
            (
                "{{ len .l }} {{ index .l 2 }} {{ index .m \"b\" }} {{ slice .s 0 1 }}",
                "3 c 2 x",
            ),
            (
                "{{ printf \"%s-%d-%v-%05.1f\" .s 7 .m .f }}",
                "x-7-map[a:1 b:2]-001.5",
            ),
            ("{{ print 1 2 \"a\" 3 }}", "1 2a3"),
            ("{{ .l }} {{ .m }}", "[a b c] map[a:1 b:2]"),
            ("{{ (index .l 0) }}{{ $.s }}", "ax"),
        ];
        for (text, want) in table {
            assert_eq!(run(text, data.clone()).as_deref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn go_template_errors() {
        let data = serde_json::json!({"s": "str", "i": 1, "z": null});
        let table = [
            ("{{ range .s }}{{ end }}", "range can't iterate over str"),
            ("{{ eq .i 1 }}", "incompatible types for comparison"),
            ("{{ .z.x }}", "nil pointer evaluating interface {}.x"),
            ("{{ nope 1 }}", "function \"nope\" not defined"),
            ("{{ if }}", "missing value for command"),
            ("{{ break }}", "{{break}} outside {{range}}"),
            ("{{ end }}", "unexpected {{end}}"),
        ];
        for (text, want) in table {
            let got = run(text, data.clone()).expect_err(text);
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn floats_print_as_go_prints_float64() {
        let table = [
            (10000000.0, "1e+07"),
            (100000.0, "100000"),
            (1234567.0, "1.234567e+06"),
            (0.5, "0.5"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (3.0, "3"),
        ];
        for (f, want) in table {
            assert_eq!(go_float(f), want, "{f}");
        }
    }
}
