//! The helpers chart templates call: `toYaml`, `toJson`, `indent`, `nindent`, `quote`,
//! `default`, `required`, `b64enc`, `sha256`, `include`, `trunc`, `lower`, `upper` (`eq`, `ne`,
//! `and`, `or`, `not` are handlebars' own).
//!
//! A helper given a value that does not exist fails with the path of that value, except
//! `default` (whose point is to stand in for it) and `required` (which fails with its message).

use base64::Engine as _;
use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason,
    ScopedJson,
};
use serde_json::Value;
use sha2::Digest;

/// What a [`Func`] helper computes from its parameters.
type Compute = fn(&[Value]) -> Result<Value, String>;

/// A helper that computes a value from its parameters.
struct Func {
    /// Whether missing parameters are passed on (as `null`) instead of failing.
    takes_missing: bool,
    f: Compute,
}

impl HelperDef for Func {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let mut args = Vec::new();
        for p in h.params() {
            if p.is_value_missing() && !self.takes_missing {
                return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
            }
            args.push(p.value().clone());
        }
        (self.f)(&args)
            .map(ScopedJson::Derived)
            .map_err(|m| RenderErrorReason::Other(format!("{}: {m}", h.name())).into())
    }
}

/// `include NAME CONTEXT`: another template's output, as a string.
struct Include;

impl HelperDef for Include {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let name = h
            .param(0)
            .and_then(|p| p.value().as_str())
            .ok_or_else(|| RenderErrorReason::Other("include: expected a template name".into()))?;
        let text = match h.param(1) {
            Some(p) if p.is_value_missing() => {
                return Err(RenderErrorReason::MissingVariable(p.relative_path().cloned()).into());
            }
            Some(p) => r.render(name, p.value())?,
            None => r.render_with_context(name, ctx)?,
        };
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn arg(args: &[Value], i: usize) -> Result<&Value, String> {
    args.get(i)
        .ok_or_else(|| format!("expected at least {} arguments", i + 1))
}

fn count(args: &[Value], i: usize) -> Result<usize, String> {
    arg(args, i)?
        .as_u64()
        .map(|n| n as usize)
        .ok_or_else(|| "expected a non-negative number first".into())
}

fn indent_by(n: usize, s: &str) -> String {
    let pad = " ".repeat(n);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

/// Helm's idea of "empty": what `default` replaces.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn to_yaml(args: &[Value]) -> Result<Value, String> {
    let out = crate::yaml::to_yaml(arg(args, 0)?);
    Ok(Value::String(out.trim_end_matches('\n').to_string()))
}

fn to_json(args: &[Value]) -> Result<Value, String> {
    Ok(Value::String(arg(args, 0)?.to_string()))
}

fn indent(args: &[Value]) -> Result<Value, String> {
    Ok(Value::String(indent_by(
        count(args, 0)?,
        &text(arg(args, 1)?),
    )))
}

fn nindent(args: &[Value]) -> Result<Value, String> {
    Ok(Value::String(format!(
        "\n{}",
        indent_by(count(args, 0)?, &text(arg(args, 1)?))
    )))
}

fn quote(args: &[Value]) -> Result<Value, String> {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| Value::String(text(a)).to_string())
        .collect();
    Ok(Value::String(quoted.join(" ")))
}

fn default(args: &[Value]) -> Result<Value, String> {
    let fallback = arg(args, 0)?;
    Ok(match args.get(1) {
        Some(given) if !is_empty(given) => given.clone(),
        _ => fallback.clone(),
    })
}

fn required(args: &[Value]) -> Result<Value, String> {
    let message = text(arg(args, 0)?);
    match args.get(1) {
        Some(v) if !v.is_null() && v.as_str() != Some("") => Ok(v.clone()),
        _ => Err(message),
    }
}

fn b64enc(args: &[Value]) -> Result<Value, String> {
    Ok(Value::String(
        base64::engine::general_purpose::STANDARD.encode(text(arg(args, 0)?)),
    ))
}

fn sha256(args: &[Value]) -> Result<Value, String> {
    Ok(Value::String(format!(
        "{:x}",
        sha2::Sha256::digest(text(arg(args, 0)?).as_bytes())
    )))
}

fn trunc(args: &[Value]) -> Result<Value, String> {
    let n = count(args, 0)?;
    Ok(Value::String(text(arg(args, 1)?).chars().take(n).collect()))
}

fn lower(args: &[Value]) -> Result<Value, String> {
    Ok(Value::String(text(arg(args, 0)?).to_lowercase()))
}

fn upper(args: &[Value]) -> Result<Value, String> {
    Ok(Value::String(text(arg(args, 0)?).to_uppercase()))
}

/// Registers every helper on `registry`.
pub fn register(registry: &mut Handlebars<'_>) {
    let funcs: [(&str, bool, Compute); 12] = [
        ("toYaml", false, to_yaml),
        ("toJson", false, to_json),
        ("indent", false, indent),
        ("nindent", false, nindent),
        ("quote", false, quote),
        ("default", true, default),
        ("required", true, required),
        ("b64enc", false, b64enc),
        ("sha256", false, sha256),
        ("trunc", false, trunc),
        ("lower", false, lower),
        ("upper", false, upper),
    ];
    for (name, takes_missing, f) in funcs {
        registry.register_helper(name, Box::new(Func { takes_missing, f }));
    }
    registry.register_helper("include", Box::new(Include));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(template: &str, data: Value, expected: Result<&str, &str>) {
        let mut r = Handlebars::new();
        r.set_strict_mode(true);
        r.register_escape_fn(handlebars::no_escape);
        register(&mut r);
        r.register_template_string("labels", "app: {{name}}")
            .expect("partial");
        let got = r
            .render_template(template, &data)
            .map_err(|e| e.to_string());
        match expected {
            Ok(s) => assert_eq!(got.as_deref(), Ok(s), "{template}"),
            Err(m) => assert!(
                got.as_ref().is_err_and(|e| e.contains(m)),
                "{template}: {got:?}"
            ),
        }
    }

    #[test]
    fn helpers_format_values() {
        let data = json!({"v": {"b": 1, "a": [1, "x"]}, "s": "Hello", "n": 0, "name": "web"});
        check("{{toYaml v}}", data.clone(), Ok("a:\n- 1\n- x\nb: 1"));
        check("{{toJson v}}", data.clone(), Ok(r#"{"b":1,"a":[1,"x"]}"#));
        check(
            "x:{{nindent 2 (toYaml v)}}",
            data.clone(),
            Ok("x:\n  a:\n  - 1\n  - x\n  b: 1"),
        );
        check("{{indent 1 s}}", data.clone(), Ok(" Hello"));
        check("{{quote s}}", data.clone(), Ok("\"Hello\""));
        check(
            "{{lower s}}{{upper s}}{{trunc 2 s}}",
            data.clone(),
            Ok("helloHELLOHe"),
        );
        check("{{b64enc s}}", data.clone(), Ok("SGVsbG8="));
        check(
            "{{sha256 s}}",
            data.clone(),
            Ok("185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969"),
        );
        check("{{include \"labels\" this}}", data.clone(), Ok("app: web"));
        check("{{#if (eq n 0)}}zero{{/if}}", data.clone(), Ok("zero"));
        check(
            "{{#if (and (ne s \"x\") (or false (not false)))}}yes{{/if}}",
            data,
            Ok("yes"),
        );
    }

    #[test]
    fn missing_values_fail_unless_defaulted() {
        let data = json!({"values": {"port": 0, "empty": ""}});
        check("{{default 8080 values.port}}", data.clone(), Ok("8080"));
        check("{{default 1 values.nothere}}", data.clone(), Ok("1"));
        check(
            "{{quote values.nothere}}",
            data.clone(),
            Err("values.nothere"),
        );
        check("{{values.nothere}}", data.clone(), Err("values.nothere"));
        check(
            "{{required \"give a port\" values.empty}}",
            data,
            Err("give a port"),
        );
    }
}
