//! YAML in and out: multi-document streams read into JSON values with each document's line, and
//! JSON values written back as YAML in the style `kubectl kustomize` prints.
//!
//! Reading splits a stream at its `---`/`...` markers (which YAML only allows at column 0, outside
//! any scalar), so every document knows the line it starts on and every syntax error is reported
//! against the whole file. Two dialects differ only in what a plain scalar means:
//! [`Dialect::Kubectl`] follows `kubectl apply -f` (sigs.k8s.io/yaml, YAML 1.1: `yes`/`on`/`y` are
//! booleans) and [`Dialect::Kustomize`] follows `kubectl kustomize` (kyaml, YAML 1.2 booleans).
//! Both read `0755` as octal, as Go's `ParseInt(s, 0, 64)` does, and reject duplicate keys.
//!
//! Writing follows go-yaml v3 as kustomize drives it: keys in go-yaml's natural order, block
//! sequences not indented under their key, strings quoted only when they would read back as
//! something else, multi-line strings as literal blocks, long lines folded at 80 columns.

use serde_json::{Map, Number, Value};
use serde_saphyr::{DuplicateKeyPolicy, SnippetMode};
use std::cmp::Ordering;
use std::sync::OnceLock;

use crate::scalar;

/// A YAML file that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct YamlError {
    /// The file, relative to the source root.
    pub file: String,
    /// The 1-based line of the problem.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Which program's reading of plain scalars to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `kubectl apply -f`: YAML 1.1 booleans (`yes`, `on`, `y` are `true`).
    Kubectl,
    /// `kubectl kustomize`: only `true`/`false` (any case) are booleans.
    Kustomize,
}

/// One document of a YAML stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// Index among the non-empty documents of the file, from 0.
    pub index: usize,
    /// The 1-based line where the document's content starts.
    pub line: usize,
    /// The document's content.
    pub value: Value,
}

/// Reads every non-empty document of a YAML (or JSON) stream.
pub fn parse_documents(
    file: &str,
    text: &str,
    dialect: Dialect,
) -> Result<Vec<Document>, YamlError> {
    let mut documents = Vec::new();
    for chunk in split(text) {
        let Some(line) = chunk.first_content_line else {
            continue;
        };
        let value = parse_chunk(file, &chunk, dialect)?;
        if value.is_null() {
            continue;
        }
        documents.push(Document {
            index: documents.len(),
            line,
            value,
        });
    }
    Ok(documents)
}

/// Reads a file that holds exactly one document; an empty file is `null`.
pub fn parse_value(file: &str, text: &str, dialect: Dialect) -> Result<Value, YamlError> {
    let mut documents = parse_documents(file, text, dialect)?;
    match documents.len() {
        0 => Ok(Value::Null),
        1 => Ok(documents.remove(0).value),
        _ => Err(YamlError {
            file: file.to_string(),
            line: documents[1].line,
            message: "expected one YAML document, found several".into(),
        }),
    }
}

struct Chunk {
    /// 0-based line of the chunk's first line in the file.
    start: usize,
    text: String,
    first_content_line: Option<usize>,
}

fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// Splits a stream at its document markers; a `---` keeps its line (blanked) so that content on
/// the marker's line stays where it was.
fn split(text: &str) -> Vec<Chunk> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = Vec::new();
    let mut current = Chunk {
        start: 0,
        text: String::new(),
        first_content_line: None,
    };
    for (n, line) in text.split('\n').enumerate() {
        let mut line = line;
        let blanked;
        if is_marker(line, "---") {
            chunks.push(std::mem::replace(
                &mut current,
                Chunk {
                    start: n,
                    text: String::new(),
                    first_content_line: None,
                },
            ));
            blanked = format!("   {}", &line[3..]);
            line = &blanked;
        } else if is_marker(line, "...") {
            chunks.push(std::mem::replace(
                &mut current,
                Chunk {
                    start: n + 1,
                    text: String::new(),
                    first_content_line: None,
                },
            ));
            continue;
        } else if line.starts_with('%') && current.first_content_line.is_none() {
            // A directive: it only concerns the document that follows.
            line = "";
        }
        let trimmed = line.trim();
        if current.first_content_line.is_none() && !trimmed.is_empty() && !trimmed.starts_with('#')
        {
            current.first_content_line = Some(n + 1);
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    chunks.push(current);
    chunks
}

fn parse_chunk(file: &str, chunk: &Chunk, dialect: Dialect) -> Result<Value, YamlError> {
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::Error,
        legacy_octal_numbers: true,
        strict_booleans: dialect == Dialect::Kustomize,
    };
    let mut value =
        serde_saphyr::from_str_with_options::<Value>(&chunk.text, options).map_err(|e| {
            let line = e
                .location()
                .map(|l| l.line() as usize)
                .filter(|l| *l > 0)
                .map(|l| chunk.start + l)
                .or(chunk.first_content_line)
                .unwrap_or(chunk.start + 1);
            let message = e.render_with_options(serde_saphyr::render_options! {
                snippets: SnippetMode::Off,
            });
            YamlError {
                file: file.to_string(),
                line,
                message: strip_location(&message),
            }
        })?;
    integral_floats_to_integers(&mut value);
    Ok(value)
}

/// Floats with no fraction become integers, as Go's JSON encoding (which kubectl and kustomize
/// both go through) prints them: `replicas: 3.0` is the integer 3 to the API server.
fn integral_floats_to_integers(value: &mut Value) {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// Drops the " at line L column C" suffix the parser adds: the caller reports the line itself.
fn strip_location(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    let first = first
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(first);
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

/// Writes a stream of documents separated by `---`, as `kubectl kustomize` prints them.
pub fn to_yaml_stream<'a>(values: impl IntoIterator<Item = &'a Value>) -> String {
    let mut out = String::new();
    for (i, value) in values.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&to_yaml(value));
    }
    out
}

/// Writes one document (ending with a newline).
pub fn to_yaml(value: &Value) -> String {
    let mut emitter = Emitter {
        out: String::new(),
        column: 0,
    };
    match value {
        Value::Object(map) if !map.is_empty() => emitter.mapping(map, 0),
        Value::Array(items) if !items.is_empty() => emitter.sequence(items, 0),
        other => {
            emitter.scalar_value(other, 0, false);
            emitter.newline();
        }
    }
    emitter.out
}

const BEST_WIDTH: usize = 80;

struct Emitter {
    out: String,
    column: usize,
}

impl Emitter {
    fn put(&mut self, s: &str) {
        self.out.push_str(s);
        self.column += s.chars().count();
    }

    fn put_char(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn newline(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn indent_to(&mut self, indent: usize) {
        for _ in 0..indent {
            self.out.push(' ');
        }
        self.column = indent;
    }

    /// A mapping whose first key is written at the current position (already indented).
    fn mapping(&mut self, map: &Map<String, Value>, indent: usize) {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort_by(|a, b| natural_cmp(a, b));
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                self.indent_to(indent);
            }
            self.key(key);
            self.put_char(':');
            self.value_after_key(&map[key], indent);
        }
    }

    fn value_after_key(&mut self, value: &Value, indent: usize) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                self.newline();
                self.indent_to(indent + 2);
                self.mapping(map, indent + 2);
            }
            Value::Array(items) if !items.is_empty() => {
                self.newline();
                self.indent_to(indent);
                self.sequence(items, indent);
            }
            other => {
                self.put_char(' ');
                self.scalar_value(other, indent + 2, true);
                self.newline();
            }
        }
    }

    /// A sequence whose first `- ` is written at the current position (already indented).
    fn sequence(&mut self, items: &[Value], indent: usize) {
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.indent_to(indent);
            }
            self.put("- ");
            match item {
                Value::Object(map) if !map.is_empty() => self.mapping(map, indent + 2),
                Value::Array(inner) if !inner.is_empty() => self.sequence(inner, indent + 2),
                other => {
                    self.scalar_value(other, indent + 2, true);
                    self.newline();
                }
            }
        }
    }

    fn key(&mut self, key: &str) {
        let style = select_style(key, true);
        self.string(key, style, 0, false);
    }

    /// A scalar (or empty collection); `indent` is where folded lines continue.
    fn scalar_value(&mut self, value: &Value, indent: usize, allow_breaks: bool) {
        match value {
            Value::Null => self.put("null"),
            Value::Bool(b) => self.put(if *b { "true" } else { "false" }),
            Value::Number(n) => self.put(&format_number(n)),
            Value::String(s) => {
                let style = select_style(s, false);
                self.string(s, style, indent, allow_breaks);
            }
            Value::Array(_) => self.put("[]"),
            Value::Object(_) => self.put("{}"),
        }
    }

    fn string(&mut self, s: &str, style: Style, indent: usize, allow_breaks: bool) {
        match style {
            Style::Plain => self.plain(s, indent, allow_breaks),
            Style::Single => self.single_quoted(s, indent, allow_breaks),
            Style::Double => self.double_quoted(s, indent, allow_breaks),
            Style::Literal => self.literal(s, indent),
        }
    }

    fn plain(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && chars.get(i + 1) != Some(&' ')
                {
                    self.newline();
                    self.indent_to(indent);
                } else {
                    self.put_char(c);
                }
                spaces = true;
            } else {
                self.put_char(c);
                spaces = false;
            }
        }
    }

    fn single_quoted(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        let chars: Vec<char> = s.chars().collect();
        self.put_char('\'');
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < chars.len()
                    && chars.get(i + 1) != Some(&' ')
                {
                    self.newline();
                    self.indent_to(indent);
                } else {
                    self.put_char(c);
                }
                spaces = true;
            } else {
                if c == '\'' {
                    self.put_char('\'');
                }
                self.put_char(c);
                spaces = false;
            }
        }
        self.put_char('\'');
    }

    fn double_quoted(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        let chars: Vec<char> = s.chars().collect();
        self.put_char('"');
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if let Some(escaped) = scalar::double_quoted_escape(c, is_printable) {
                self.put(&escaped);
                spaces = false;
            } else if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i + 1 < chars.len()
                {
                    self.newline();
                    self.indent_to(indent);
                    if chars.get(i + 1) == Some(&' ') {
                        self.put_char('\\');
                    }
                } else {
                    self.put_char(c);
                }
                spaces = true;
            } else {
                self.put_char(c);
                spaces = false;
            }
        }
        self.put_char('"');
    }

    fn literal(&mut self, s: &str, indent: usize) {
        self.put_char('|');
        if s.starts_with([' ', '\n']) {
            self.put("2");
        }
        if !s.ends_with('\n') {
            self.put_char('-');
        } else if s == "\n" || s.ends_with("\n\n") {
            self.put_char('+');
        }
        let body = s.strip_suffix('\n').unwrap_or(s);
        for line in body.split('\n') {
            self.newline();
            if !line.is_empty() {
                self.indent_to(indent);
                self.put(line);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// go-yaml's choice: literal for multi-line text, plain when the text reads back as the same
/// string, double quotes otherwise; then downgraded as the characters require.
fn select_style(s: &str, key: bool) -> Style {
    let wanted = if s.contains('\n') {
        Style::Literal
    } else if resolves_to_string(s) && !is_old_bool(s) && !is_base60_float(s) {
        Style::Plain
    } else {
        Style::Double
    };
    let a = scalar::analyze(s, is_printable);
    match wanted {
        Style::Plain if key && a.multiline => Style::Double,
        Style::Plain if !a.block_plain || (s.is_empty() && key) => {
            if a.single {
                Style::Single
            } else {
                Style::Double
            }
        }
        Style::Literal if !a.block || key => Style::Double,
        other => other,
    }
}

fn is_printable(c: char) -> bool {
    matches!(c, '\n' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        && c != '\u{feff}'
}

fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "on"
            | "On"
            | "ON"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "off"
            | "Off"
            | "OFF"
    )
}

fn is_base60_float(s: &str) -> bool {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
            .expect("static pattern")
    })
    .is_match(s)
}

/// Whether go-yaml v3 reads the plain scalar `s` as a string (not null, bool, number or time).
fn resolves_to_string(s: &str) -> bool {
    static FLOAT: OnceLock<regex::Regex> = OnceLock::new();
    static TIME: OnceLock<regex::Regex> = OnceLock::new();
    match s {
        "" | "~" | "null" | "Null" | "NULL" | "true" | "True" | "TRUE" | "false" | "False"
        | "FALSE" | ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf"
        | "-.INF" | ".nan" | ".NaN" | ".NAN" | "<<" => return false,
        _ => {}
    }
    let first = s.chars().next().unwrap_or(' ');
    if !(first.is_ascii_digit() || first == '+' || first == '-' || first == '.') {
        return true;
    }
    let plain = s.replace('_', "");
    if go_parse_int(&plain) {
        return false;
    }
    let float = FLOAT.get_or_init(|| {
        regex::Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
            .expect("static pattern")
    });
    if float.is_match(&plain) {
        return false;
    }
    let time = TIME.get_or_init(|| {
        regex::Regex::new(
            r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(([Tt][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?(Z|[-+][0-9]{2}:[0-9]{2}))|( [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?))?$",
        )
        .expect("static pattern")
    });
    !(first.is_ascii_digit() && time.is_match(s))
}

/// Whether Go's `strconv.ParseInt(s, 0, 64)` (or `ParseUint`) accepts `s`.
fn go_parse_int(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (radix, body) = if let Some(b) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, b)
    } else if let Some(b) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, b)
    } else if let Some(b) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, b)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    !body.is_empty() && u64::from_str_radix(body, radix).is_ok()
}

/// Numbers as Go prints them: integers as they are, floats in `%g` shortest form.
fn format_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    if f == 0.0 {
        return "0".into();
    }
    // Shortest digits and decimal exponent, from Rust's shortest round-trip form.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    // Go's shortest %g: an exponent below -4 or from 6 on is written as such.
    if !(-4..6).contains(&exp) {
        format!("{sign}{}", go_exp(&digits, exp))
    } else {
        format!("{sign}{}", fixed(&digits, exp))
    }
}

fn go_exp(digits: &str, exp: i32) -> String {
    let (head, tail) = digits.split_at(1);
    let mantissa = if tail.is_empty() {
        head.to_string()
    } else {
        format!("{head}.{tail}")
    };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn fixed(digits: &str, exp: i32) -> String {
    if exp < 0 {
        format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            format!("{digits}{}", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    }
}

/// go-yaml's key order: runs of digits compare as numbers, letters sort after other characters
/// unless they follow a digit.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut digits = false;
    let n = ar.len().min(br.len());
    for i in 0..n {
        if ar[i] == br[i] {
            digits = ar[i].is_ascii_digit();
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            let a_first = if digits { al } else { bl };
            return if a_first {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let (mut an, mut bn) = (0i128, 0i128);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .saturating_mul(10)
                .saturating_add((ar[ai] as u8 - b'0') as i128);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .saturating_mul(10)
                .saturating_add((br[bi] as u8 - b'0') as i128);
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_write(value: Value, expected: &str) {
        assert_eq!(to_yaml(&value), expected, "writing {value}");
    }

    fn check_read(text: &str, dialect: Dialect, expected: Result<Vec<(usize, Value)>, &str>) {
        let got = parse_documents("f.yaml", text, dialect)
            .map(|docs| {
                docs.into_iter()
                    .map(|d| (d.line, d.value))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string());
        match expected {
            Ok(docs) => assert_eq!(got, Ok(docs), "reading {text:?}"),
            Err(prefix) => {
                let err = got.expect_err(text);
                assert!(
                    err.starts_with(prefix),
                    "{err:?} should start with {prefix:?}"
                );
            }
        }
    }

    #[test]
    fn hostile_yaml_is_refused_with_the_file_and_line_not_expanded() {
        // Billion laughs: nine levels of ten aliases would expand to 10^9 strings.
        let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in b'b'..=b'j' {
            let prev = (level - 1) as char;
            let refs = vec![format!("*{prev}"); 10].join(", ");
            bomb.push_str(&format!("{}: &{} [{refs}]\n", level as char, level as char));
        }
        let err =
            parse_documents("bomb.yaml", &bomb, Dialect::Kubectl).expect_err("a billion laughs");
        assert_eq!(err.file, "bomb.yaml");
        assert!(err.line >= 1, "{err}");
        // A document nested ten thousand levels deep.
        let deep = format!("{}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse_documents("deep.yaml", &deep, Dialect::Kubectl)
            .expect_err("nesting beyond the limit");
        assert_eq!(err.file, "deep.yaml");
        assert!(err.to_string().starts_with("deep.yaml:1: "), "{err}");
    }

    #[test]
    fn documents_are_split_with_their_lines() {
        check_read(
            "a: 1\n---\n# c\n\nb: 2\n---\n---\nc: [1]\n...\n",
            Dialect::Kubectl,
            Ok(vec![
                (1, json!({"a": 1})),
                (5, json!({"b": 2})),
                (8, json!({"c": [1]})),
            ]),
        );
        check_read(
            "--- a: 1\n",
            Dialect::Kubectl,
            Ok(vec![(1, json!({"a": 1}))]),
        );
        check_read(
            "{\"json\": true}",
            Dialect::Kubectl,
            Ok(vec![(1, json!({"json": true}))]),
        );
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_name_the_file_line() {
        check_read("a: 1\n---\nb: [\n", Dialect::Kubectl, Err("f.yaml:"));
        check_read(
            "a: 1\n---\nx: 1\nx: 2\n",
            Dialect::Kubectl,
            Err("f.yaml:4: duplicate mapping key: x"),
        );
        check_read(
            "a: 1\n---\nb:\n  c: 1\n d: 2\n",
            Dialect::Kubectl,
            Err("f.yaml:5:"),
        );
    }

    #[test]
    fn scalars_are_read_like_kubectl_and_kustomize() {
        let text = "a: yes\nb: on\nc: 0755\nd: \"0755\"\ne: 0x1F\nf: true\ng: 1.5\nh: ~\n";
        check_read(
            text,
            Dialect::Kubectl,
            Ok(vec![(
                1,
                json!({"a": true, "b": true, "c": 493, "d": "0755", "e": 31, "f": true, "g": 1.5, "h": null}),
            )]),
        );
        check_read(
            text,
            Dialect::Kustomize,
            Ok(vec![(
                1,
                json!({"a": "yes", "b": "on", "c": 493, "d": "0755", "e": 31, "f": true, "g": 1.5, "h": null}),
            )]),
        );
    }

    #[test]
    fn strings_are_quoted_only_when_they_would_read_back_differently() {
        check_write(
            json!({"a": "yes", "b": "n", "c": "0755", "d": "", "e": "a: b", "f": "a #b", "g": " x",
                   "h": "*x", "i": "-", "j": "it's", "k": "say \"hi\"", "l": "a\tb", "m": "1.5",
                   "n": "2001-12-14", "o": "1:20", "p": "plain text", "q": "héllo", "r": "hi 😀",
                   "s": "x:", "t": ":x", "u": "null", "v": "1_000", "w": "---x", "x": "--"}),
            "a: \"yes\"\nb: \"n\"\nc: \"0755\"\nd: \"\"\ne: 'a: b'\nf: 'a #b'\ng: ' x'\nh: '*x'\n\
             i: '-'\nj: it's\nk: say \"hi\"\nl: \"a\\tb\"\nm: \"1.5\"\n\"n\": \"2001-12-14\"\no: \"1:20\"\n\
             p: plain text\nq: héllo\nr: \"hi \\U0001F600\"\ns: 'x:'\nt: :x\nu: \"null\"\n\
             v: \"1_000\"\nw: '---x'\nx: --\n",
        );
    }

    #[test]
    fn collections_are_written_in_kustomize_layout() {
        check_write(
            json!({"list": [{"a": 1, "b": ["x"]}, {}, [1, 2], []], "map": {"k": {"z": null}}, "e": {}}),
            "e: {}\nlist:\n- a: 1\n  b:\n  - x\n- {}\n- - 1\n  - 2\n- []\nmap:\n  k:\n    z: null\n",
        );
        check_write(json!([1, "a"]), "- 1\n- a\n");
        check_write(json!("top"), "top\n");
    }

    #[test]
    fn multi_line_strings_become_literal_blocks() {
        check_write(
            json!({"a": "l1\nl2\n", "b": "l1\nl2", "c": "x \ny", "d": " lead\nx\n\n", "e": ["x\n\ny"]}),
            "a: |\n  l1\n  l2\nb: |-\n  l1\n  l2\nc: \"x \\ny\"\nd: |2+\n   lead\n  x\n\ne:\n- |-\n  x\n\n  y\n",
        );
    }

    #[test]
    fn long_strings_fold_at_eighty_columns() {
        let long = format!(
            "{} {} {} {}",
            "a".repeat(30),
            "b".repeat(45),
            "c".repeat(42),
            "d".repeat(19)
        );
        check_write(
            json!({"data": {"long": long}}),
            &format!(
                "data:\n  long: {} {}\n    {} {}\n",
                "a".repeat(30),
                "b".repeat(45),
                "c".repeat(42),
                "d".repeat(19)
            ),
        );
    }

    #[test]
    fn numbers_are_written_like_go() {
        check_write(
            json!([
                1,
                -2,
                1.5,
                1000.0,
                1e6,
                2.5e-5,
                0.0001,
                12345678901234567890u64,
                1e21
            ]),
            "- 1\n- -2\n- 1.5\n- 1000\n- 1e+06\n- 2.5e-05\n- 0.0001\n- 12345678901234567890\n- 1e+21\n",
        );
    }

    #[test]
    fn keys_sort_in_go_yaml_natural_order() {
        let mut keys = vec![
            "b",
            "a",
            "item10",
            "item9",
            "FALSE",
            "~",
            "0.",
            "_1",
            "+1",
            "-",
            "--",
            "-1",
            "app",
            "app.kubernetes.io/name",
            "Z",
        ];
        keys.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            keys,
            vec![
                "+1",
                "-",
                "--",
                "-1",
                "_1",
                "~",
                "0.",
                "FALSE",
                "Z",
                "a",
                "app",
                "app.kubernetes.io/name",
                "b",
                "item9",
                "item10"
            ]
        );
    }
}
