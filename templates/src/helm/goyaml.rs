//! `toYaml` as Helm prints it: Go's `sigs.k8s.io/yaml` (JSON, then `yaml.v2`), byte for byte.
//!
//! Maps are printed with sorted keys, sequences inside mappings are not indented, empty
//! collections are `{}`/`[]`, numbers print as Go's JSON then YAML round trip leaves them, and
//! strings follow `yaml.v2`'s choice of style: plain unless the text would read back as another
//! type (`"true"`, `"1.0"`, `"2024-01-01"`, `"null"`, `""`), single-quoted when plain is not
//! allowed (`'{{ x }}'`, `': '`, a leading `- `), literal `|-` for multi-line text, double-quoted
//! when nothing else can hold it; long lines fold at column 80 as libyaml's emitter folds them.

use super::gotmpl::{Value, go_float};
use crate::scalar;

const WIDTH: usize = 80;
const INDENT: usize = 2;

/// `toYaml`: the YAML text without the final newline.
pub fn to_yaml(v: &Value) -> String {
    let mut e = Emitter {
        out: String::new(),
        column: 0,
        whitespace: true,
        indention: true,
    };
    e.node(v, -1, Ctx::Root);
    let mut s = e.out;
    while s.ends_with('\n') {
        s.pop();
    }
    s
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    Root,
    MapValue,
    SeqItem,
}

enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

struct Emitter {
    out: String,
    column: usize,
    whitespace: bool,
    indention: bool,
}

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write(&mut self, s: &str) {
        for c in s.chars() {
            self.put(c);
        }
    }

    fn indent(&mut self, indent: i64) {
        let indent = indent.max(0) as usize;
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn indicator(&mut self, s: &str, need_ws: bool, is_ws: bool, is_indention: bool) {
        if need_ws && !self.whitespace {
            self.put(' ');
        }
        self.write(s);
        self.whitespace = is_ws;
        self.indention = self.indention && is_indention;
    }

    fn node(&mut self, v: &Value, indent: i64, ctx: Ctx) {
        match v {
            Value::Map(m) => {
                let m = m.borrow();
                if m.is_empty() {
                    self.indicator("{", true, true, false);
                    self.indicator("}", false, false, false);
                    return;
                }
                let indent = if indent < 0 {
                    0
                } else {
                    indent + INDENT as i64
                };
                for (k, x) in m.iter() {
                    self.key(k, indent);
                    self.node(x, indent, Ctx::MapValue);
                }
            }
            Value::Files(_) | Value::ApiVersions(_) => {
                self.node(&Value::from_json(&v.to_json()), indent, ctx)
            }
            Value::List(l) => {
                if l.is_empty() {
                    self.indicator("[", true, true, false);
                    self.indicator("]", false, false, false);
                    return;
                }
                let indent = if indent < 0 {
                    0
                } else if ctx == Ctx::MapValue {
                    indent
                } else {
                    indent + INDENT as i64
                };
                for x in l.iter() {
                    self.indent(indent);
                    self.indicator("-", true, false, true);
                    self.node(x, indent, Ctx::SeqItem);
                }
            }
            scalar => {
                let indent = if indent < 0 {
                    INDENT as i64
                } else {
                    indent + INDENT as i64
                };
                self.scalar(scalar, indent, false);
            }
        }
    }

    fn key(&mut self, k: &str, indent: i64) {
        self.indent(indent);
        self.scalar(&Value::str(k), indent + INDENT as i64, true);
        self.indicator(":", false, false, false);
    }

    fn scalar(&mut self, v: &Value, indent: i64, simple_key: bool) {
        let text = match v {
            Value::Nil => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 1e21 {
                    format!("{}", *f as i128)
                } else {
                    go_float(*f)
                }
            }
            Value::Str(s) => {
                let s: &str = s;
                let style = choose_style(s, simple_key);
                match style {
                    Style::Plain => self.plain(s, indent, !simple_key),
                    Style::Single => self.single(s, indent, !simple_key),
                    Style::Double => self.double(s, indent, !simple_key),
                    Style::Literal => self.literal(s, indent),
                }
                return;
            }
            _ => String::new(),
        };
        self.plain(&text, indent, !simple_key);
    }

    fn plain(&mut self, s: &str, indent: i64, allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == ' ' {
                if allow_breaks && !spaces && self.column > WIDTH && chars.get(i + 1) != Some(&' ')
                {
                    self.indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                self.indention = false;
                spaces = false;
            }
            i += 1;
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn single(&mut self, s: &str, indent: i64, allow_breaks: bool) {
        self.indicator("'", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > WIDTH
                    && i != 0
                    && i != chars.len() - 1
                    && chars.get(i + 1) != Some(&' ')
                {
                    self.indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                if c == '\'' {
                    self.put('\'');
                }
                self.indention = false;
                spaces = false;
            }
        }
        self.indicator("'", false, false, false);
    }

    fn double(&mut self, s: &str, indent: i64, allow_breaks: bool) {
        self.indicator("\"", true, false, false);
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if let Some(escaped) = scalar::double_quoted_escape(c, printable) {
                self.write(&escaped);
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > WIDTH && i != 0 && i != chars.len() - 1
                {
                    self.indent(indent);
                    if chars.get(i + 1) == Some(&' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
            i += 1;
        }
        self.indicator("\"", false, false, false);
    }

    fn literal(&mut self, s: &str, indent: i64) {
        self.indicator("|", true, false, false);
        if s.starts_with([' ', '\n']) {
            self.indicator(&INDENT.to_string(), false, false, false);
        }
        let chomp = if !s.ends_with('\n') {
            Some("-")
        } else if s == "\n" || s[..s.len() - 1].ends_with('\n') {
            Some("+")
        } else {
            None
        };
        if let Some(c) = chomp {
            self.indicator(c, false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in s.chars() {
            if c == '\n' {
                self.put_break();
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.indent(indent);
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

fn printable(c: char) -> bool {
    let n = c as u32;
    n == 0x0a
        || (0x20..=0x7e).contains(&n)
        || n == 0x85
        || (0xa0..=0xd7ff).contains(&n)
        || ((0xe000..=0xfffd).contains(&n) && n != 0xfeff)
        || (0x10000..=0x10ffff).contains(&n)
}

fn choose_style(s: &str, simple_key: bool) -> Style {
    let requested = if s.contains('\n') {
        Style::Literal
    } else if resolves_to_string(s) {
        Style::Plain
    } else {
        Style::Double
    };
    // yaml.v2 writes the empty string quoted, never plain.
    let a = match scalar::analyze(s, printable) {
        a if s.is_empty() => scalar::Analysis {
            block_plain: false,
            ..a
        },
        a => a,
    };
    match requested {
        Style::Plain => {
            if !a.block_plain || (s.is_empty() && simple_key) {
                if a.single {
                    Style::Single
                } else {
                    Style::Double
                }
            } else {
                Style::Plain
            }
        }
        Style::Literal => {
            if !a.block || simple_key {
                Style::Double
            } else {
                Style::Literal
            }
        }
        other => other,
    }
}

/// Whether yaml.v2 reads `s`, unquoted, back as a string (not null, bool, number, timestamp).
fn resolves_to_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if SPECIAL.contains(&s) {
        return false;
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return true;
    }
    !(is_int(s) || is_float(s) || is_base60(s) || is_timestamp(s))
}

fn is_int(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    if body.is_empty() {
        return false;
    }
    let clean = |t: &str, radix: u32| {
        !t.is_empty()
            && !t.starts_with('_')
            && !t.ends_with('_')
            && !t.contains("__")
            && t.chars().all(|c| c == '_' || c.is_digit(radix))
    };
    if let Some(b) = body.strip_prefix("0b") {
        return !b.is_empty() && b.chars().all(|c| c == '0' || c == '1' || c == '_');
    }
    if let Some(h) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        return clean(h.strip_prefix('_').unwrap_or(h), 16);
    }
    if let Some(o) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        return clean(o.strip_prefix('_').unwrap_or(o), 8);
    }
    if body.len() > 1 && body.starts_with('0') {
        return clean(body.strip_prefix("0_").unwrap_or(&body[1..]), 8);
    }
    body.chars().all(|c| c.is_ascii_digit())
}

fn is_float(s: &str) -> bool {
    // ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$
    let b = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mant, exp) = match b.find(['e', 'E']) {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    let mant_ok = if let Some(frac) = mant.strip_prefix('.') {
        !frac.is_empty() && frac.chars().all(|c| c.is_ascii_digit())
    } else {
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        !int.is_empty()
            && int.chars().all(|c| c.is_ascii_digit())
            && frac.chars().all(|c| c.is_ascii_digit())
    };
    let exp_ok = exp.is_none_or(|e| {
        let d = e.strip_prefix(['-', '+']).unwrap_or(e);
        !d.is_empty() && d.chars().all(|c| c.is_ascii_digit())
    });
    mant_ok && exp_ok
}

fn is_base60(s: &str) -> bool {
    // ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$
    let b = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (main, _frac) = match b.split_once('.') {
        Some((m, f)) if f.chars().all(|c| c.is_ascii_digit() || c == '_') => (m, f),
        Some(_) => return false,
        None => (b, ""),
    };
    let mut parts = main.split(':');
    let Some(head) = parts.next() else {
        return false;
    };
    if head.is_empty()
        || !head.as_bytes()[0].is_ascii_digit()
        || !head.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return false;
    }
    let mut n = 0;
    for p in parts {
        n += 1;
        let ok = match p.len() {
            1 => p.as_bytes()[0].is_ascii_digit(),
            2 => (b'0'..=b'5').contains(&p.as_bytes()[0]) && p.as_bytes()[1].is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    n > 0
}

fn is_timestamp(s: &str) -> bool {
    // yaml.v2 tries "2006-1-2T15:4:5.999999999Z07:00", "2006-1-2t15:4:5.999999999Z07:00",
    // "2006-1-2 15:4:5.999999999" and "2006-1-2".
    let date_end = s.find(['T', 't', ' ']).unwrap_or(s.len());
    let date: Vec<&str> = s[..date_end].split('-').collect();
    let num = |p: &str, min: usize, max: usize| {
        p.len() >= min && p.len() <= max && p.chars().all(|c| c.is_ascii_digit())
    };
    if date.len() != 3 || !num(date[0], 4, 4) || !num(date[1], 1, 2) || !num(date[2], 1, 2) {
        return false;
    }
    if date_end == s.len() {
        return true;
    }
    let rest = &s[date_end + 1..];
    let time_end = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (hms, frac) = rest[..time_end]
        .split_once('.')
        .unwrap_or((&rest[..time_end], "0"));
    let t: Vec<&str> = hms.split(':').collect();
    if t.len() != 3 || !t.iter().all(|p| num(p, 1, 2)) || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return false;
    }
    let zone = &rest[time_end..];
    if s.as_bytes()[date_end] == b' ' {
        return zone.is_empty();
    }
    zone == "Z"
        || (zone.len() == 6
            && zone.as_bytes()[3] == b':'
            && zone[1..3]
                .chars()
                .chain(zone[4..].chars())
                .all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn s(t: &str) -> Value {
        Value::str(t)
    }

    #[test]
    fn strings_take_yaml_v2_styles() {
        let cases = [
            ("plain", "plain"),
            ("true", "\"true\""),
            ("yes", "\"yes\""),
            ("1.0", "\"1.0\""),
            ("0755", "\"0755\""),
            ("", "\"\""),
            ("{{ .Values.x }}", "'{{ .Values.x }}'"),
            ("a: b", "'a: b'"),
            ("- x", "'- x'"),
            ("a\nb", "|-\n  a\n  b"),
            ("a\n", "|\n  a"),
            (" lead", "' lead'"),
            ("tab\there", "\"tab\\there\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("1:20", "\"1:20\""),
            ("it's", "it's"),
            ("*.example.com", "'*.example.com'"),
        ];
        for (input, want) in cases {
            assert_eq!(to_yaml(&s(input)), want, "{input:?}");
        }
    }

    #[test]
    fn collections_follow_yaml_v2_layout() {
        let mut inner = BTreeMap::new();
        inner.insert("b".to_string(), Value::Float(10000000.0));
        inner.insert(
            "a".to_string(),
            Value::list(vec![s("x"), Value::Float(1.5)]),
        );
        let mut m = BTreeMap::new();
        m.insert("z".to_string(), Value::map(inner));
        m.insert("e".to_string(), Value::map(BTreeMap::new()));
        m.insert(
            "l".to_string(),
            Value::list(vec![Value::map(
                [("k".to_string(), s("v")), ("j".to_string(), Value::Nil)]
                    .into_iter()
                    .collect(),
            )]),
        );
        assert_eq!(
            to_yaml(&Value::map(m)),
            "e: {}\nl:\n- j: null\n  k: v\nz:\n  a:\n  - x\n  - 1.5\n  b: 10000000"
        );
    }

    #[test]
    fn long_plain_strings_fold_at_eighty_columns() {
        let long = "word ".repeat(20);
        let long = long.trim_end();
        let m = Value::map([("k".to_string(), s(long))].into_iter().collect());
        let out = to_yaml(&m);
        assert!(out.contains("\n  word"), "{out}");
    }
}
