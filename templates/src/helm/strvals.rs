//! Helm's `--set` syntax (`strvals`): `a.b=c,list[0]=x,arr={1,2}`, `\` escaping `.`, `,`,
//! `=` and `[`, typed values (`true`, `false`, `null`, integers without a leading zero) unless
//! `--set-string`.

use super::gotmpl::Value;
use std::collections::BTreeMap;

/// Parses `expr` into `into`; `string_values` keeps every value a string (`--set-string`).
pub fn parse_into(expr: &str, into: &Value, string_values: bool) -> Result<(), String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut p = P {
        c: chars,
        i: 0,
        st: string_values,
        expr: expr.to_string(),
        literal: None,
    };
    while p.i < p.c.len() {
        p.key_into(into)?;
    }
    Ok(())
}

/// Parses `key=value` where the value is taken verbatim (`--set-file`, after reading the file).
pub fn set_literal(key: &str, value: Value, into: &Value) -> Result<(), String> {
    let escaped = format!("{key}=");
    let chars: Vec<char> = escaped.chars().collect();
    let mut p = P {
        c: chars,
        i: 0,
        st: true,
        expr: key.to_string(),
        literal: Some(value),
    };
    p.key_into(into)
}

struct P {
    c: Vec<char>,
    i: usize,
    st: bool,
    expr: String,
    literal: Option<Value>,
}

impl P {
    fn read_until(&mut self, stops: &[char]) -> (String, Option<char>) {
        let mut out = String::new();
        while self.i < self.c.len() {
            let ch = self.c[self.i];
            self.i += 1;
            if ch == '\\' && self.i < self.c.len() {
                out.push(self.c[self.i]);
                self.i += 1;
                continue;
            }
            if stops.contains(&ch) {
                return (out, Some(ch));
            }
            out.push(ch);
        }
        (out, None)
    }

    fn typed(&self, s: &str) -> Value {
        if self.st {
            return Value::str(s);
        }
        if s.eq_ignore_ascii_case("true") {
            Value::Bool(true)
        } else if s.eq_ignore_ascii_case("false") {
            Value::Bool(false)
        } else if s.eq_ignore_ascii_case("null") {
            Value::Nil
        } else if s == "0" {
            Value::Int(0)
        } else if !s.is_empty() && !s.starts_with('0') && s.parse::<i64>().is_ok() {
            Value::Int(s.parse().unwrap_or(0))
        } else {
            Value::str(s)
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        if let Some(v) = self.literal.take() {
            self.i = self.c.len();
            return Ok(v);
        }
        if self.c.get(self.i) == Some(&'{') {
            self.i += 1;
            let mut items = Vec::new();
            loop {
                let (s, stop) = self.read_until(&[',', '}']);
                match stop {
                    Some(',') => items.push(self.typed(&s)),
                    Some('}') => {
                        items.push(self.typed(&s));
                        break;
                    }
                    _ => return Err(format!("list must terminate with '}}' in {:?}", self.expr)),
                }
            }
            // Skip the separator after the list.
            if self.c.get(self.i) == Some(&',') {
                self.i += 1;
            }
            return Ok(Value::list(items));
        }
        let (s, _) = self.read_until(&[',']);
        Ok(self.typed(&s))
    }

    fn key_into(&mut self, into: &Value) -> Result<(), String> {
        let Value::Map(map) = into else {
            return Err("not a map".into());
        };
        let (key, stop) = self.read_until(&['=', '.', '[', ',']);
        match stop {
            Some('=') => {
                let v = self.value()?;
                if matches!(v, Value::Nil) && !self.st {
                    map.borrow_mut().remove(&key);
                    map.borrow_mut().insert(key, Value::Nil);
                } else {
                    map.borrow_mut().insert(key, v);
                }
                Ok(())
            }
            Some('.') => {
                let child = match map.borrow().get(&key) {
                    Some(Value::Map(m)) => Some(Value::Map(m.clone())),
                    _ => None,
                };
                let child = child.unwrap_or_else(|| Value::map(BTreeMap::new()));
                map.borrow_mut().insert(key, child.clone());
                self.key_into(&child)
            }
            Some('[') => {
                let existing = match map.borrow().get(&key) {
                    Some(Value::List(l)) => l.to_vec(),
                    _ => Vec::new(),
                };
                let list = self.list_into(existing)?;
                map.borrow_mut().insert(key, Value::list(list));
                Ok(())
            }
            _ => Err(format!("key {key:?} has no value")),
        }
    }

    /// After `[`: reads the index and what follows, returns the updated list.
    fn list_into(&mut self, mut list: Vec<Value>) -> Result<Vec<Value>, String> {
        let (idx, stop) = self.read_until(&[']']);
        if stop != Some(']') {
            return Err(format!("missing ']' in {:?}", self.expr));
        }
        let i: usize = idx
            .parse()
            .map_err(|_| format!("failed to parse index {idx:?} in {:?}", self.expr))?;
        if i > 65536 {
            return Err(format!(
                "index of {i} is greater than maximum supported index 65536"
            ));
        }
        while list.len() <= i {
            list.push(Value::Nil);
        }
        match self.c.get(self.i).copied() {
            Some('=') => {
                self.i += 1;
                list[i] = self.value()?;
            }
            Some('.') => {
                self.i += 1;
                let child = match &list[i] {
                    Value::Map(m) => Value::Map(m.clone()),
                    _ => Value::map(BTreeMap::new()),
                };
                list[i] = child.clone();
                self.key_into(&child)?;
            }
            Some('[') => {
                self.i += 1;
                let inner = match &list[i] {
                    Value::List(l) => l.to_vec(),
                    _ => Vec::new(),
                };
                list[i] = Value::list(self.list_into(inner)?);
            }
            _ => {
                return Err(format!(
                    "list index must be followed by '=', '.' or '[' in {:?}",
                    self.expr
                ));
            }
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::gotmpl::Value;

    fn parse(expr: &str, st: bool) -> serde_json::Value {
        let v = Value::map(BTreeMap::new());
        parse_into(expr, &v, st).expect(expr);
        v.to_json()
    }

    #[test]
    fn set_expressions_parse_as_helm_does() {
        let table = [
            ("a=b", false, serde_json::json!({"a": "b"})),
            (
                "a.b=1,c=true",
                false,
                serde_json::json!({"a": {"b": 1}, "c": true}),
            ),
            ("a=007", false, serde_json::json!({"a": "007"})),
            ("l={x,y}", false, serde_json::json!({"l": ["x", "y"]})),
            ("l[1]=z", false, serde_json::json!({"l": [null, "z"]})),
            ("l[0].n=v", false, serde_json::json!({"l": [{"n": "v"}]})),
            ("a\\.b=c", false, serde_json::json!({"a.b": "c"})),
            ("a=x\\,y", false, serde_json::json!({"a": "x,y"})),
            ("a=1", true, serde_json::json!({"a": "1"})),
            ("a=null", false, serde_json::json!({"a": null})),
        ];
        for (expr, st, want) in table {
            assert_eq!(parse(expr, st), want, "{expr}");
        }
    }
}
