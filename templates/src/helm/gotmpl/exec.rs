//! The executor: runs parsed trees against data, with Go's semantics.
//!
//! Go's built-in functions (`and`, `or`, `not`, `len`, `index`, `slice`, `print`, `printf`,
//! `println`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`) are here; every other name goes to the
//! [`Library`]. Missing map keys are `nil`, which prints as `<no value>` (Helm's
//! `missingkey=zero`), or an error with [`Exec::missing_key_error`] (`missingkey=error`).

use super::parse::{Arg, Cmd, Node, Pipe, Pos, Tree};
use super::{Error, Value, go_print};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::rc::Rc;

/// How deep `template`/`include` may nest before execution stops.
const MAX_DEPTH: usize = 1000;

/// Why a library function failed.
#[derive(Debug)]
pub enum CallError {
    /// An ordinary error (`error calling NAME: …`).
    Message(String),
    /// `fail` or `required`: helm reports these as `execution error at (file:line:col)`.
    Fail(String),
    /// A nested template (`include`, `tpl`) failed; reported as is.
    Nested(Error),
}

/// Functions beyond Go's built-ins.
pub trait Library {
    /// Calls `name`; `None` when there is no such function.
    fn call(
        &self,
        exec: &mut Exec<'_>,
        name: &str,
        args: Vec<Value>,
    ) -> Option<Result<Value, CallError>>;
}

/// A set of named templates.
#[derive(Clone, Default)]
pub struct Set {
    /// Templates by name (files by path, and every `define`).
    pub trees: HashMap<String, Rc<Tree>>,
}

impl Set {
    /// Parses `text` as the template `name` (from `file`) and adds it and its `define`s; later
    /// definitions replace earlier ones, as in Go.
    pub fn add(&mut self, file: &str, name: &str, text: &str) -> Result<(), Error> {
        let (tree, defines) = super::parse::parse(file, name, text)?;
        for (n, t) in defines {
            self.trees.insert(n, Rc::new(t));
        }
        self.trees.insert(name.to_string(), Rc::new(tree));
        Ok(())
    }
}

enum Flow {
    Normal,
    Break,
    Continue,
}

/// One execution: the templates, the library, variables and nesting depth.
pub struct Exec<'a> {
    /// The templates.
    pub set: Rc<Set>,
    lib: &'a dyn Library,
    vars: Vec<(String, Value)>,
    depth: usize,
    tree: Rc<Tree>,
    missing_key_error: bool,
}

impl<'a> Exec<'a> {
    /// An executor over `set`.
    pub fn new(set: Rc<Set>, lib: &'a dyn Library) -> Self {
        let tree = Rc::new(Tree {
            name: String::new(),
            file: Rc::new(super::parse::File {
                name: String::new(),
                text: String::new(),
            }),
            root: Vec::new(),
        });
        Exec {
            set,
            lib,
            vars: Vec::new(),
            depth: 0,
            tree,
            missing_key_error: false,
        }
    }

    /// Makes a field of a map that has no such key an error (`map has no entry for key "k"`),
    /// as Go's `Option("missingkey=error")`; `index` is not affected, as in Go.
    pub fn missing_key_error(mut self, on: bool) -> Self {
        self.missing_key_error = on;
        self
    }

    /// The name of the template being executed.
    pub fn template_name(&self) -> &str {
        &self.tree.name
    }

    /// Executes the template `name` with `data` and returns its output.
    pub fn execute(&mut self, name: &str, data: Value) -> Result<String, Error> {
        let Some(tree) = self.set.trees.get(name).cloned() else {
            return Err(Error {
                file: self.tree.file.name.clone(),
                line: 0,
                message: format!("template: no template {name:?} associated with template"),
            });
        };
        self.run_tree(tree, data)
    }

    /// Executes a template of another set (`tpl`), with the current library.
    pub fn execute_in(&mut self, set: Rc<Set>, name: &str, data: Value) -> Result<String, Error> {
        let saved = std::mem::replace(&mut self.set, set);
        let result = self.execute(name, data);
        self.set = saved;
        result
    }

    fn run_tree(&mut self, tree: Rc<Tree>, data: Value) -> Result<String, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err(0, "exceeded maximum template depth (1000)"));
        }
        self.depth += 1;
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$".into(), data.clone())]);
        let saved_tree = std::mem::replace(&mut self.tree, tree.clone());
        let mut out = String::new();
        let result = self.walk(&mut out, &tree.root, &data);
        self.tree = saved_tree;
        self.vars = saved_vars;
        self.depth -= 1;
        result.map(|_| out)
    }

    fn err(&self, pos: Pos, message: impl std::fmt::Display) -> Error {
        let (line, col) = self.tree.file.line_col(pos);
        Error {
            file: self.tree.file.name.clone(),
            line,
            message: format!(
                "template: {}:{}:{}: executing {:?} at <{}>: {}",
                self.tree.file.name,
                line,
                col,
                self.tree.name,
                self.snippet(pos),
                message
            ),
        }
    }

    fn snippet(&self, pos: Pos) -> String {
        let text = &self.tree.file.text;
        let rest = text.get(pos..).unwrap_or("");
        let rest = rest.strip_prefix("{{").unwrap_or(rest);
        let rest = rest.strip_prefix('-').unwrap_or(rest).trim_start();
        let end = rest.find(['|', '}', '\n']).unwrap_or(rest.len());
        rest[..end].trim().to_string()
    }

    fn walk(&mut self, out: &mut String, nodes: &[Node], dot: &Value) -> Result<Flow, Error> {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action(pipe) => {
                    let v = self.pipe(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        print_value(out, &v);
                    }
                }
                Node::If {
                    with,
                    pipe,
                    then,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let v = self.pipe(pipe, dot)?;
                    let flow = if v.truth() {
                        if *with {
                            self.walk(out, then, &v)?
                        } else {
                            self.walk(out, then, dot)?
                        }
                    } else {
                        self.walk(out, otherwise, dot)?
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let mut p = pipe.clone();
                    let decl = std::mem::take(&mut p.decl);
                    let v = self.pipe(&p, dot)?;
                    let items: Vec<(Value, Value)> = match &v {
                        Value::List(l) => l
                            .iter()
                            .enumerate()
                            .map(|(i, x)| (Value::Int(i as i64), x.clone()))
                            .collect(),
                        Value::ApiVersions(l) => l
                            .iter()
                            .enumerate()
                            .map(|(i, x)| (Value::Int(i as i64), Value::str(x.as_str())))
                            .collect(),
                        Value::Map(m) => m
                            .borrow()
                            .iter()
                            .map(|(k, x)| (Value::str(k.as_str()), x.clone()))
                            .collect(),
                        Value::Files(f) => f
                            .iter()
                            .map(|(k, x)| {
                                let bytes = x.iter().map(|b| Value::Int(*b as i64)).collect();
                                (Value::str(k.as_str()), Value::list(bytes))
                            })
                            .collect(),
                        Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
                        Value::Nil => Vec::new(),
                        other => {
                            return Err(self.err(
                                pipe.pos,
                                format!("range can't iterate over {}", go_print(other)),
                            ));
                        }
                    };
                    if items.is_empty() {
                        let flow = self.walk(out, otherwise, dot)?;
                        self.vars.truncate(mark);
                        if !matches!(flow, Flow::Normal) {
                            return Ok(flow);
                        }
                        continue;
                    }
                    for (k, x) in items {
                        let inner = self.vars.len();
                        match decl.len() {
                            1 => self.vars.push((decl[0].clone(), x.clone())),
                            2 => {
                                self.vars.push((decl[0].clone(), k));
                                self.vars.push((decl[1].clone(), x.clone()));
                            }
                            _ => {}
                        }
                        let flow = self.walk(out, body, &x)?;
                        self.vars.truncate(inner);
                        if matches!(flow, Flow::Break) {
                            break;
                        }
                    }
                    self.vars.truncate(mark);
                }
                Node::Template { pos, name, pipe } => {
                    let data = match pipe {
                        Some(p) => self.pipe(p, dot)?,
                        None => Value::Nil,
                    };
                    let Some(tree) = self.set.trees.get(name).cloned() else {
                        return Err(self.err(*pos, format!("template {name:?} not defined")));
                    };
                    let text = self.run_tree(tree, data)?;
                    out.push_str(&text);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn var(&self, pos: Pos, name: &str) -> Result<Value, Error> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.err(pos, format!("undefined variable: {name}")))
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, Error> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.cmd(cmd, dot, value)?);
        }
        let value = value.unwrap_or_default();
        for name in &pipe.decl {
            if pipe.declare {
                self.vars.push((name.clone(), value.clone()));
            } else {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => {
                        return Err(self.err(pipe.pos, format!("undefined variable: {name}")));
                    }
                }
            }
        }
        Ok(value)
    }

    fn field(
        &mut self,
        pos: Pos,
        mut v: Value,
        fields: &[String],
        args: &mut Option<Vec<Value>>,
    ) -> Result<Value, Error> {
        for (i, name) in fields.iter().enumerate() {
            let last = i + 1 == fields.len();
            v = match &v {
                Value::Map(m) => {
                    if last && args.as_ref().is_some_and(|a| !a.is_empty()) {
                        return Err(
                            self.err(pos, format!("{name} is not a method but has arguments"))
                        );
                    }
                    let found = m.borrow().get(name).cloned();
                    match found {
                        Some(v) => v,
                        None if self.missing_key_error => {
                            return Err(self.err(pos, format!("map has no entry for key {name:?}")));
                        }
                        None => Value::Nil,
                    }
                }
                Value::Files(_) | Value::ApiVersions(_) => {
                    let call_args = if last {
                        args.take().unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    let mut full = vec![v.clone()];
                    full.extend(call_args);
                    let method = format!(
                        "{}.{}",
                        if matches!(v, Value::Files(_)) {
                            "Files"
                        } else {
                            "APIVersions"
                        },
                        name
                    );
                    match self.lib.call(self, &method, full) {
                        Some(Ok(r)) => r,
                        Some(Err(e)) => return Err(self.call_error(pos, name, e)),
                        None => {
                            return Err(self.err(
                                pos,
                                format!("can't evaluate field {name} in type {}", v.type_name()),
                            ));
                        }
                    }
                }
                Value::Nil => {
                    return Err(
                        self.err(pos, format!("nil pointer evaluating interface {{}}.{name}"))
                    );
                }
                other => {
                    return Err(self.err(
                        pos,
                        format!("can't evaluate field {name} in type {}", other.type_name()),
                    ));
                }
            };
        }
        Ok(v)
    }

    fn call_error(&self, pos: Pos, name: &str, e: CallError) -> Error {
        match e {
            CallError::Message(m) => self.err(pos, format!("error calling {name}: {m}")),
            CallError::Fail(m) => {
                let (line, col) = self.tree.file.line_col(pos);
                Error {
                    file: self.tree.file.name.clone(),
                    line,
                    message: format!(
                        "execution error at ({}:{}:{}): {}",
                        self.tree.file.name, line, col, m
                    ),
                }
            }
            CallError::Nested(e) => e,
        }
    }

    fn arg(&mut self, arg: &Arg, dot: &Value, pos: Pos) -> Result<Value, Error> {
        Ok(match arg {
            Arg::Ident(name) => return self.call(pos, name, Vec::new()),
            Arg::Field(f) => self.field(pos, dot.clone(), f, &mut None)?,
            Arg::Var(n, f) => {
                let v = self.var(pos, n)?;
                self.field(pos, v, f, &mut None)?
            }
            Arg::Pipe(p, f) => {
                let mark = self.vars.len();
                let v = self.pipe(p, dot)?;
                self.vars.truncate(mark);
                self.field(pos, v, f, &mut None)?
            }
            Arg::Str(s) => Value::Str(s.clone()),
            Arg::Int(i) => Value::Int(*i),
            Arg::Float(f) => Value::Float(*f),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Nil,
        })
    }

    fn cmd(&mut self, cmd: &Cmd, dot: &Value, piped: Option<Value>) -> Result<Value, Error> {
        let pos = cmd.pos;
        let first = &cmd.args[0];
        match first {
            Arg::Ident(name) if name == "and" || name == "or" => {
                let and = name == "and";
                let mut last = Value::Nil;
                let n = cmd.args.len() - 1 + usize::from(piped.is_some());
                if n == 0 {
                    return Err(self.err(
                        pos,
                        format!("wrong number of args for {name}: want at least 1 got 0"),
                    ));
                }
                for a in &cmd.args[1..] {
                    last = self.arg(a, dot, pos)?;
                    if last.truth() != and {
                        return Ok(last);
                    }
                }
                if let Some(p) = piped {
                    last = p;
                }
                Ok(last)
            }
            Arg::Ident(name) => {
                let mut args = Vec::with_capacity(cmd.args.len());
                for a in &cmd.args[1..] {
                    args.push(self.arg(a, dot, pos)?);
                }
                args.extend(piped);
                self.call(pos, name, args)
            }
            Arg::Field(f) | Arg::Var(_, f) | Arg::Pipe(_, f)
                if cmd.args.len() > 1 || piped.is_some() =>
            {
                let mut args = Vec::new();
                for a in &cmd.args[1..] {
                    args.push(self.arg(a, dot, pos)?);
                }
                args.extend(piped);
                let (base, fields) = match first {
                    Arg::Field(_) => (dot.clone(), f.as_slice()),
                    Arg::Var(n, _) => (self.var(pos, n)?, f.as_slice()),
                    Arg::Pipe(p, _) => {
                        let mark = self.vars.len();
                        let v = self.pipe(p, dot)?;
                        self.vars.truncate(mark);
                        (v, f.as_slice())
                    }
                    _ => unreachable_base(),
                };
                if fields.is_empty() {
                    return Err(self.err(pos, "can't give argument to non-function"));
                }
                let mut a = Some(args);
                self.field(pos, base, fields, &mut a)
            }
            _ => {
                if cmd.args.len() > 1 || piped.is_some() {
                    return Err(self.err(pos, "can't give argument to non-function"));
                }
                self.arg(first, dot, pos)
            }
        }
    }

    fn call(&mut self, pos: Pos, name: &str, args: Vec<Value>) -> Result<Value, Error> {
        match builtin(name, &args) {
            Some(Ok(v)) => Ok(v),
            Some(Err(m)) => Err(self.err(pos, format!("error calling {name}: {m}"))),
            None => match self.lib.call(self, name, args) {
                Some(Ok(v)) => Ok(v),
                Some(Err(e)) => Err(self.call_error(pos, name, e)),
                None => Err(self.err(pos, format!("function {name:?} not defined"))),
            },
        }
    }
}

fn unreachable_base() -> (Value, &'static [String]) {
    (Value::Nil, &[])
}

/// Prints a value as a template action does: `nil` is `<no value>`.
pub fn print_value(out: &mut String, v: &Value) {
    match v {
        Value::Nil => out.push_str("<no value>"),
        Value::Str(s) => out.push_str(s),
        v => out.push_str(&go_print(v)),
    }
}

#[derive(PartialEq, Clone, Copy)]
enum Basic {
    Bool,
    Int,
    Float,
    Str,
    Other,
    Invalid,
}

fn basic(v: &Value) -> Basic {
    match v {
        Value::Nil => Basic::Invalid,
        Value::Bool(_) => Basic::Bool,
        Value::Int(_) => Basic::Int,
        Value::Float(_) => Basic::Float,
        Value::Str(_) => Basic::Str,
        _ => Basic::Other,
    }
}

/// Go's `eq arg1 arg2`.
pub fn go_eq(a: &Value, b: &Value) -> Result<bool, String> {
    let (ka, kb) = (basic(a), basic(b));
    if ka != kb {
        if ka != Basic::Invalid && kb != Basic::Invalid {
            return Err("incompatible types for comparison".into());
        }
        return Ok(false);
    }
    Ok(match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Nil, Value::Nil) => true,
        _ => return Err("non-comparable types".into()),
    })
}

fn go_lt(a: &Value, b: &Value) -> Result<Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => Ok(x.partial_cmp(y).unwrap_or(Ordering::Equal)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        _ if basic(a) != basic(b) => Err("incompatible types for comparison".into()),
        _ => Err("invalid type for comparison".into()),
    }
}

fn builtin(name: &str, args: &[Value]) -> Option<Result<Value, String>> {
    let arity = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    Some((|| -> Result<Value, String> {
        match name {
            "not" => {
                arity(1)?;
                Ok(Value::Bool(!args[0].truth()))
            }
            "len" => {
                arity(1)?;
                Ok(Value::Int(match &args[0] {
                    Value::Str(s) => s.len(),
                    Value::List(l) => l.len(),
                    Value::Map(m) => m.borrow().len(),
                    Value::Files(f) => f.len(),
                    Value::ApiVersions(a) => a.len(),
                    v => return Err(format!("len of type {}", v.type_name())),
                } as i64))
            }
            "index" => {
                if args.is_empty() {
                    return Err("wrong number of args for index".into());
                }
                let mut v = args[0].clone();
                for k in &args[1..] {
                    v = match (&v, k) {
                        (Value::Map(m), Value::Str(s)) => {
                            m.borrow().get(&**s).cloned().unwrap_or(Value::Nil)
                        }
                        (Value::List(l), Value::Int(i)) => {
                            if *i < 0 || *i as usize >= l.len() {
                                return Err(format!(
                                    "error calling index: index out of range: {i}"
                                ));
                            }
                            l[*i as usize].clone()
                        }
                        (Value::Str(s), Value::Int(i)) => {
                            let b = s.as_bytes();
                            if *i < 0 || *i as usize >= b.len() {
                                return Err(format!("index out of range: {i}"));
                            }
                            Value::Int(b[*i as usize] as i64)
                        }
                        (Value::Nil, _) => return Err("index of untyped nil".into()),
                        (Value::Map(_), _) => {
                            return Err("value has type int; should be string".into());
                        }
                        (v, _) => {
                            return Err(format!("can't index item of type {}", v.type_name()));
                        }
                    };
                }
                Ok(v)
            }
            "slice" => {
                let Some(first) = args.first() else {
                    return Err("wrong number of args for slice".into());
                };
                let idx: Vec<usize> = args[1..]
                    .iter()
                    .map(|a| match a {
                        Value::Int(i) if *i >= 0 => Ok(*i as usize),
                        _ => Err("cannot index slice/array with non-int".to_string()),
                    })
                    .collect::<Result<_, _>>()?;
                match first {
                    Value::Str(s) => {
                        let lo = idx.first().copied().unwrap_or(0);
                        let hi = idx.get(1).copied().unwrap_or(s.len());
                        s.get(lo..hi)
                            .map(Value::str)
                            .ok_or_else(|| "index out of range".to_string())
                    }
                    Value::List(l) => {
                        let lo = idx.first().copied().unwrap_or(0);
                        let hi = idx.get(1).copied().unwrap_or(l.len());
                        l.get(lo..hi)
                            .map(|s| Value::list(s.to_vec()))
                            .ok_or_else(|| "index out of range".to_string())
                    }
                    v => Err(format!("can't slice item of type {}", v.type_name())),
                }
            }
            "print" => Ok(Value::str(go_sprint(args))),
            "println" => {
                let parts: Vec<String> = args.iter().map(go_print).collect();
                Ok(Value::str(parts.join(" ") + "\n"))
            }
            "printf" => {
                let Some(Value::Str(f)) = args.first() else {
                    return Err("printf needs a format string".into());
                };
                Ok(Value::str(super::super::fmt::sprintf(f, &args[1..])))
            }
            "eq" => {
                if args.len() < 2 {
                    return Err("missing argument for comparison".into());
                }
                for b in &args[1..] {
                    if go_eq(&args[0], b)? {
                        return Ok(Value::Bool(true));
                    }
                }
                Ok(Value::Bool(false))
            }
            "ne" => {
                arity(2)?;
                Ok(Value::Bool(!go_eq(&args[0], &args[1])?))
            }
            "lt" | "le" | "gt" | "ge" => {
                arity(2)?;
                let o = go_lt(&args[0], &args[1])?;
                Ok(Value::Bool(match name {
                    "lt" => o == Ordering::Less,
                    "le" => o != Ordering::Greater,
                    "gt" => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            _ => Err(String::new()),
        }
    })())
    .filter(|r| !matches!(r, Err(e) if e.is_empty()))
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
pub fn go_sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&go_print(a));
    }
    out
}
