//! CEL (Common Expression Language) as Kubernetes evaluates it: expressions compiled once with
//! the standard library, cel-rust's strings extension and the Kubernetes libraries, then
//! evaluated against JSON variables (`self`, `oldSelf`, `object`, `params`, ...).
//!
//! # Layout
//! - [`lists`]: `isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf` on lists, and the
//!   `sets` library.
//! - [`regex`]: `find` and `findAll` on strings.
//! - [`quantity`]: `quantity()`, `isQuantity()` and the methods of resource quantities.
//! - [`url`]: `url()`, `isURL()` and the accessors of URLs.
//!
//! The string functions Kubernetes policies use (`charAt`, `indexOf`, `lowerAscii`,
//! `upperAscii`, `replace`, `split`, `substring`, `trim`, `join`, ...) are cel-rust's strings
//! extension, which follows cel-go's as Kubernetes does. `has()`, the comprehension macros and
//! optionals (`a.?b`, `orValue`) come with cel-rust's standard environment.
//!
//! cel-rust has no type checker: an expression is refused when it does not parse or names a
//! variable its environment does not declare; type errors show when it runs.

pub mod lists;
pub mod quantity;
pub mod regex;
pub mod url;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, MapExpr, StructExpr};
use cel::objects::{Key, Map};
use cel::{Context, Env, Value};

/// A CEL value, as expressions see their variables and return results.
pub use cel::Value as CelValue;

/// Why an expression could not be compiled or evaluated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The expression does not parse.
    #[error("compilation failed: {0}")]
    Compile(String),
    /// The expression names a variable its environment does not declare.
    #[error("compilation failed: undeclared reference to '{0}'")]
    Undeclared(String),
    /// Evaluation failed (a missing key, a type mismatch, a function's error).
    #[error("{0}")]
    Evaluate(String),
    /// The expression evaluated to another type than the one asked for.
    #[error("expected {expected}, got {got}")]
    Type {
        /// The type asked for (`bool`, `string`).
        expected: &'static str,
        /// The type it evaluated to.
        got: String,
    },
}

/// The environment every expression compiles and runs in: the standard library, optionals,
/// the strings extension, and the list overloads that share names with string ones.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .and_then(|()| env.add_extension(lists::overloads))
        .expect("the CEL extensions declare distinct overloads");
    Arc::new(env)
});

/// A compiled expression.
#[derive(Debug)]
pub struct Program {
    program: cel::Program,
    source: String,
}

impl Program {
    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression refers to `variable` (used to tell transition rules, which name
    /// `oldSelf`, from the others).
    pub fn references(&self, variable: &str) -> bool {
        self.program.references().has_variable(variable)
    }
}

/// Compiles `source` for an environment declaring `variables`: a parse error, or a reference
/// to any other variable, is an error.
pub fn compile(source: &str, variables: &[&str]) -> Result<Program, Error> {
    let program = ENV
        .compile(source)
        .map_err(|e| Error::Compile(e.to_string().replace('\n', "; ")))?;
    let mut free = BTreeSet::new();
    free_variables(program.expression(), &mut Vec::new(), &mut free);
    if let Some(v) = free
        .into_iter()
        .find(|v| !variables.contains(&v.as_str()) && !is_type_name(v))
    {
        return Err(Error::Undeclared(v));
    }
    Ok(Program {
        program,
        source: source.to_string(),
    })
}

/// The function namespaces of the environment (`sets.contains`, `strings.quote`,
/// `optional.of`, `lists.range`).
const NAMESPACES: &[&str] = &["sets", "strings", "optional", "lists"];

/// Collects the identifiers `expr` uses that no enclosing comprehension (`all`, `exists`,
/// `map`, ...) binds.
fn free_variables(expr: &IdedExpr, bound: &mut Vec<String>, out: &mut BTreeSet<String>) {
    match &expr.expr {
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.contains(name) {
                out.insert(name.clone());
            }
        }
        Expr::Call(call) => {
            // `sets.contains(a, b)`: `sets` names a library, not a variable.
            let namespace = matches!(&call.target.as_deref().map(|t| &t.expr),
                Some(Expr::Ident(n)) if NAMESPACES.contains(&n.as_str()) && !bound.contains(n));
            if let Some(target) = call.target.as_deref().filter(|_| !namespace) {
                free_variables(target, bound, out);
            }
            for arg in &call.args {
                free_variables(arg, bound, out);
            }
        }
        Expr::Comprehension(c) => {
            free_variables(&c.iter_range, bound, out);
            free_variables(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(c.accu_var.clone());
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            for e in [&c.loop_cond, &c.loop_step, &c.result] {
                free_variables(e, bound, out);
            }
            bound.truncate(depth);
        }
        Expr::List(list) => list
            .elements
            .iter()
            .for_each(|e| free_variables(e, bound, out)),
        Expr::Map(MapExpr { entries }) | Expr::Struct(StructExpr { entries, .. }) => {
            for entry in entries {
                match &entry.expr {
                    EntryExpr::StructField(f) => free_variables(&f.value, bound, out),
                    EntryExpr::MapEntry(m) => {
                        free_variables(&m.key, bound, out);
                        free_variables(&m.value, bound, out);
                    }
                }
            }
        }
        Expr::Select(select) => free_variables(&select.operand, bound, out),
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Names that are types in CEL, usable as values (`type(x) == string`).
fn is_type_name(name: &str) -> bool {
    matches!(
        name,
        "bool"
            | "int"
            | "uint"
            | "double"
            | "string"
            | "bytes"
            | "list"
            | "map"
            | "null_type"
            | "type"
            | "optional"
    )
}

/// The variables an expression runs with, as JSON (`None`: the variable is `null`).
#[derive(Clone, Default)]
pub struct Activation {
    variables: Vec<(String, Value)>,
}

impl Activation {
    /// An activation without variables.
    pub fn new() -> Self {
        Activation::default()
    }

    /// Binds `name` to a JSON value (`null` when absent).
    pub fn bind(mut self, name: &str, value: Option<&serde_json::Value>) -> Self {
        let value = value.map(from_json).unwrap_or(Value::Null);
        self.variables.push((name.to_string(), value));
        self
    }

    /// Binds `name` to a CEL value.
    pub fn bind_value(mut self, name: &str, value: Value) -> Self {
        self.variables.push((name.to_string(), value));
        self
    }
}

/// Runs `program` with `activation`'s variables.
pub fn evaluate(program: &Program, activation: &Activation) -> Result<Value, Error> {
    let mut context = Context::with_env(Arc::clone(&ENV));
    lists::register(&mut context);
    regex::register(&mut context);
    quantity::register(&mut context);
    url::register(&mut context);
    for (name, value) in &activation.variables {
        context.add_variable_from_value(name.clone(), value.clone());
    }
    program
        .program
        .execute(&context)
        .map_err(|e| Error::Evaluate(e.to_string()))
}

/// Runs `program` and expects a boolean.
pub fn evaluate_bool(program: &Program, activation: &Activation) -> Result<bool, Error> {
    match evaluate(program, activation)? {
        Value::Bool(b) => Ok(b),
        other => Err(Error::Type {
            expected: "bool",
            got: other.type_of().to_string(),
        }),
    }
}

/// Runs `program` and expects a string (a `messageExpression`).
pub fn evaluate_string(program: &Program, activation: &Activation) -> Result<String, Error> {
    match evaluate(program, activation)? {
        Value::String(s) => Ok(s.to_string()),
        other => Err(Error::Type {
            expected: "string",
            got: other.type_of().to_string(),
        }),
    }
}

/// A JSON value as CEL sees it: objects as maps with string keys, whole numbers as `int`.
pub fn from_json(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => match n.as_u64() {
                Some(u) => Value::UInt(u),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(from_json).collect()))
        }
        serde_json::Value::Object(fields) => {
            map(fields.iter().map(|(k, v)| (k.clone(), from_json(v))))
        }
    }
}

/// A CEL map with string keys.
pub fn map(entries: impl IntoIterator<Item = (String, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k)), v))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(expression: &str, expected: Result<bool, &str>) {
        let object = json!({"spec": {"replicas": 3, "name": "web", "tags": ["a", "b"]}});
        let activation = Activation::new().bind("self", Some(&object));
        let got = compile(expression, &["self"]).and_then(|p| evaluate_bool(&p, &activation));
        match expected {
            Ok(b) => assert_eq!(got, Ok(b), "{expression}"),
            Err(text) => {
                let err = got.expect_err(expression).to_string();
                assert!(err.contains(text), "{expression}: {err}");
            }
        }
    }

    #[test]
    fn json_variables_are_maps_lists_and_scalars() {
        check("self.spec.replicas == 3", Ok(true));
        check("self.spec.replicas > 5", Ok(false));
        check(
            "self.spec.tags.size() == 2 && 'a' in self.spec.tags",
            Ok(true),
        );
        check("self.spec.name.startsWith('w')", Ok(true));
    }

    #[test]
    fn has_and_optionals_work_on_absent_fields() {
        check("has(self.spec.replicas)", Ok(true));
        check("!has(self.spec.missing)", Ok(true));
        check("self.spec.?missing.orValue(7) == 7", Ok(true));
        check("self.?spec.?replicas.hasValue()", Ok(true));
    }

    #[test]
    fn macros_iterate_over_lists() {
        check("self.spec.tags.all(t, t.size() == 1)", Ok(true));
        check("self.spec.tags.exists(t, t == 'b')", Ok(true));
        check(
            "self.spec.tags.map(t, t.upperAscii()) == ['A', 'B']",
            Ok(true),
        );
    }

    #[test]
    fn bad_expressions_are_refused_when_compiled() {
        check("self.spec.replicas >", Err("compilation failed"));
        check("other.spec > 1", Err("undeclared reference to 'other'"));
        check("type(self) == map", Ok(true));
        check(
            "self.spec.tags.all(t, t == other)",
            Err("undeclared reference to 'other'"),
        );
    }

    #[test]
    fn evaluation_errors_and_wrong_result_types_are_errors() {
        check("self.spec.nothing == 1", Err("No such key"));
        check("self.spec.replicas", Err("expected bool, got int"));
    }

    #[test]
    fn string_library_follows_kubernetes() {
        for expression in [
            "'abc'.charAt(1) == 'b'",
            "'hello'.indexOf('l') == 2",
            "'hello'.lastIndexOf('l') == 3",
            "'TacoCat'.lowerAscii() == 'tacocat'",
            "'TacoCat'.upperAscii() == 'TACOCAT'",
            "'a-b-c'.replace('-', '+') == 'a+b+c'",
            "'a,b,c'.split(',') == ['a', 'b', 'c']",
            "'tacocat'.substring(4) == 'cat'",
            "'  x  '.trim() == 'x'",
            "['a', 'b'].join('/') == 'a/b'",
        ] {
            check(expression, Ok(true));
        }
    }
}
