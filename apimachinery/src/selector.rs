//! Label and field selectors: parsing their string syntax, matching objects, printing them back.
//!
//! Both follow Kubernetes' `labels` and `fields` packages closely, including their quirks, because
//! clients rely on them: `a!=b` and `a notin (b)` match objects without the label `a`, requirements
//! are sorted by key when printed, and a field selector treats a missing field as `""`.
//!
//! The label grammar, after whitespace is skipped between tokens:
//!
//! ```text
//! selector    = "" | requirement ("," requirement)*
//! requirement = ["!"] key | key op value | key ("in" | "notin") "(" [values] ")"
//! op          = "=" | "==" | "!=" | ">" | "<"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::validation;

/// Why a selector could not be parsed or built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A token of a label selector is not one the grammar allows at that place.
    #[error("found '{found}', expected: {expected}")]
    Unexpected {
        /// The text found (empty at the end of the string).
        found: String,
        /// What the grammar allows there.
        expected: &'static str,
    },
    /// One requirement of a label selector is malformed; wraps the precise problem.
    #[error("unable to parse requirement: {0}")]
    Requirement(Box<SelectorError>),
    /// A label key is not a qualified name.
    #[error("invalid label key \"{key}\": {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A label value is not a valid label value.
    #[error("invalid label value \"{value}\" for key \"{key}\": {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An operator got the wrong number or kind of values.
    #[error("values for key \"{key}\": {reason}")]
    InvalidValues {
        /// The key of the requirement.
        key: String,
        /// What is wrong with the values.
        reason: &'static str,
    },
    /// A `matchExpressions` operator is not `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[error("\"{0}\" is not a valid label selector operator")]
    InvalidOperator(String),
    /// A term of a field selector has no `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    InvalidFieldTerm {
        /// The whole selector.
        selector: String,
        /// The term that could not be read.
        term: String,
    },
    /// A field selector value has a `\` not followed by `\`, `,` or `=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value has an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {0}")]
    UnescapedChar(char),
}

/// The operator of one label requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelOp {
    /// `key=value`: the label exists and has the value.
    Equals,
    /// `key==value`: same as [`LabelOp::Equals`], kept apart so it prints back as written.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label exists and has one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label exists.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>n`: the label is an integer greater than `n`.
    GreaterThan,
    /// `key<n`: the label is an integer less than `n`.
    LessThan,
}

/// One requirement of a label selector: a key, an operator and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRequirement {
    key: String,
    op: LabelOp,
    values: Vec<String>,
}

impl LabelRequirement {
    /// A requirement, after checking the key, the values and that their number suits the
    /// operator. Values are sorted and deduplicated.
    pub fn new(key: &str, op: LabelOp, values: Vec<String>) -> Result<Self, SelectorError> {
        let errs = validation::qualified_name(key);
        if !errs.is_empty() {
            return Err(SelectorError::InvalidKey {
                key: key.to_string(),
                reason: errs.join("; "),
            });
        }
        let count_error = match op {
            LabelOp::In | LabelOp::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::NotEquals if values.len() != 1 => {
                Some("exact-match compatibility requires one single value")
            }
            LabelOp::Exists | LabelOp::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            LabelOp::GreaterThan | LabelOp::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            LabelOp::GreaterThan | LabelOp::LessThan if values[0].parse::<i64>().is_err() => {
                Some("for 'Gt', 'Lt' operators, the value must be an integer")
            }
            _ => None,
        };
        if let Some(reason) = count_error {
            return Err(SelectorError::InvalidValues {
                key: key.to_string(),
                reason,
            });
        }
        for value in &values {
            let errs = validation::label_value(value);
            if !errs.is_empty() {
                return Err(SelectorError::InvalidValue {
                    key: key.to_string(),
                    value: value.clone(),
                    reason: errs.join("; "),
                });
            }
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(LabelRequirement {
            key: key.to_string(),
            op,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn op(&self) -> LabelOp {
        self.op
    }

    /// The values, sorted; empty for `Exists` and `DoesNotExist`.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a set of labels satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = labels.get(&self.key);
        let listed = |v: &String| self.values.contains(v);
        let compare = |v: &String, want: std::cmp::Ordering| match (
            v.parse::<i64>(),
            self.values[0].parse::<i64>(),
        ) {
            (Ok(have), Ok(bound)) => have.cmp(&bound) == want,
            _ => false,
        };
        match self.op {
            LabelOp::Equals | LabelOp::DoubleEquals | LabelOp::In => label.is_some_and(listed),
            LabelOp::NotEquals | LabelOp::NotIn => !label.is_some_and(listed),
            LabelOp::Exists => label.is_some(),
            LabelOp::DoesNotExist => label.is_none(),
            LabelOp::GreaterThan => label.is_some_and(|v| compare(v, std::cmp::Ordering::Greater)),
            LabelOp::LessThan => label.is_some_and(|v| compare(v, std::cmp::Ordering::Less)),
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let first = self.values.first().map(String::as_str).unwrap_or("");
        match self.op {
            LabelOp::Exists => write!(f, "{key}"),
            LabelOp::DoesNotExist => write!(f, "!{key}"),
            LabelOp::Equals => write!(f, "{key}={first}"),
            LabelOp::DoubleEquals => write!(f, "{key}=={first}"),
            LabelOp::NotEquals => write!(f, "{key}!={first}"),
            LabelOp::GreaterThan => write!(f, "{key}>{first}"),
            LabelOp::LessThan => write!(f, "{key}<{first}"),
            LabelOp::In => write!(f, "{key} in ({})", self.values.join(",")),
            LabelOp::NotIn => write!(f, "{key} notin ({})", self.values.join(",")),
        }
    }
}

/// A label selector: requirements that must all hold. No requirements selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// A selector of the given requirements, sorted by key as Kubernetes sorts them.
    pub fn from_requirements(mut requirements: Vec<LabelRequirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements }
    }

    /// Parses the string syntax of `?labelSelector=` and `kubectl -l`.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let tokens = lex(input);
        let mut parser = Parser {
            tokens: &tokens,
            pos: 0,
        };
        Ok(LabelSelector::from_requirements(parser.selector()?))
    }

    /// Converts a `metav1.LabelSelector` (`matchLabels` and `matchExpressions`).
    pub fn from_metav1(selector: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(LabelRequirement::new(
                key,
                LabelOp::Equals,
                vec![value.clone()],
            )?);
        }
        for expr in selector.match_expressions.iter().flatten() {
            let op = match expr.operator.as_str() {
                "In" => LabelOp::In,
                "NotIn" => LabelOp::NotIn,
                "Exists" => LabelOp::Exists,
                "DoesNotExist" => LabelOp::DoesNotExist,
                other => return Err(SelectorError::InvalidOperator(other.to_string())),
            };
            let values = expr.values.clone().unwrap_or_default();
            requirements.push(LabelRequirement::new(&expr.key, op, values)?);
        }
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector has no requirements and so matches everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

/// A token of the label selector syntax. Keywords (`in`, `notin`) are identifiers here; the
/// parser reads them as operators only where an operator is expected, as Kubernetes does.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    Comma,
    Open,
    Close,
    End,
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Token::Ident(s) => s,
            Token::Not => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::Comma => ",",
            Token::Open => "(",
            Token::Close => ")",
            Token::End => "",
        }
    }
}

fn is_label_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_label_symbol(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Splits a label selector into tokens, always ending with [`Token::End`].
fn lex(input: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start_matches(is_label_whitespace);
        let Some(c) = rest.chars().next() else {
            tokens.push(Token::End);
            return tokens;
        };
        let (token, len) = if rest.starts_with("!=") {
            (Token::NotEquals, 2)
        } else if rest.starts_with("==") {
            (Token::DoubleEquals, 2)
        } else if is_label_symbol(c) {
            let token = match c {
                '!' => Token::Not,
                '=' => Token::Equals,
                '>' => Token::GreaterThan,
                '<' => Token::LessThan,
                ',' => Token::Comma,
                '(' => Token::Open,
                _ => Token::Close,
            };
            (token, 1)
        } else {
            let len = rest
                .find(|c| is_label_whitespace(c) || is_label_symbol(c))
                .unwrap_or(rest.len());
            (Token::Ident(rest[..len].to_string()), len)
        };
        tokens.push(token);
        rest = &rest[len..];
    }
}

/// A recursive-descent parser over the tokens; it never recurses deeper than one requirement.
struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn unexpected(token: &Token, expected: &'static str) -> SelectorError {
        SelectorError::Unexpected {
            found: token.text().to_string(),
            expected,
        }
    }

    fn selector(&mut self) -> Result<Vec<LabelRequirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::End => return Ok(requirements),
                Token::Ident(_) | Token::Not => {}
                other => {
                    return Err(Self::unexpected(other, "!, identifier, or 'end of string'"));
                }
            }
            let requirement = self
                .requirement()
                .map_err(|e| SelectorError::Requirement(Box::new(e)))?;
            requirements.push(requirement);
            match self.next() {
                Token::End => return Ok(requirements),
                Token::Comma => match self.peek() {
                    Token::Ident(_) | Token::Not => {}
                    other => return Err(Self::unexpected(other, "identifier after ','")),
                },
                other => return Err(Self::unexpected(&other, "',' or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<LabelRequirement, SelectorError> {
        let negated = *self.peek() == Token::Not;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Ident(key) => key,
            other => return Err(Self::unexpected(&other, "identifier")),
        };
        if negated || matches!(self.peek(), Token::End | Token::Comma) {
            let op = if negated {
                LabelOp::DoesNotExist
            } else {
                LabelOp::Exists
            };
            return LabelRequirement::new(&key, op, Vec::new());
        }
        let op = match self.next() {
            Token::Equals => LabelOp::Equals,
            Token::DoubleEquals => LabelOp::DoubleEquals,
            Token::NotEquals => LabelOp::NotEquals,
            Token::GreaterThan => LabelOp::GreaterThan,
            Token::LessThan => LabelOp::LessThan,
            Token::Ident(word) if word == "in" => LabelOp::In,
            Token::Ident(word) if word == "notin" => LabelOp::NotIn,
            other => {
                return Err(Self::unexpected(&other, "in, notin, =, ==, !=, gt, lt"));
            }
        };
        let values = match op {
            LabelOp::In | LabelOp::NotIn => self.value_list()?,
            _ => vec![self.exact_value()?],
        };
        LabelRequirement::new(&key, op, values)
    }

    /// The value after `=`, `==`, `!=`, `>` or `<`; nothing before `,` or the end means `""`.
    fn exact_value(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            Token::End | Token::Comma => Ok(String::new()),
            Token::Ident(_) => Ok(self.next().text().to_string()),
            other => Err(Self::unexpected(other, "identifier")),
        }
    }

    /// `( v1, v2, … )`. Empty places between commas, and `()` itself, stand for `""`.
    fn value_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let open = self.next();
        if open != Token::Open {
            return Err(Self::unexpected(&open, "'('"));
        }
        let mut values = Vec::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::Close => {
                    if expect_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Token::Comma => {
                    if expect_value {
                        values.push(String::new());
                    }
                    expect_value = true;
                }
                Token::Ident(value) if expect_value => {
                    values.push(value);
                    expect_value = false;
                }
                other if expect_value => {
                    return Err(Self::unexpected(&other, "',', ')' or identifier"));
                }
                other => return Err(Self::unexpected(&other, "',' or ')'")),
            }
        }
    }
}

/// The operator of one field requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOp {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One requirement of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    /// The field path, such as `metadata.name` or `status.phase`.
    pub field: String,
    /// The operator.
    pub op: FieldOp,
    /// The value, unescaped.
    pub value: String,
}

/// A field selector: requirements on field values that must all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses the string syntax of `?fieldSelector=`: `field=value`, `field==value` and
    /// `field!=value` terms separated by commas. In values, `\,`, `\=` and `\\` escape those
    /// characters. Terms are sorted, as Kubernetes sorts them.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut terms = split_unescaped_commas(input);
        terms.sort();
        let mut requirements = Vec::new();
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, op, raw)) = split_field_term(term) else {
                return Err(SelectorError::InvalidFieldTerm {
                    selector: input.to_string(),
                    term: term.to_string(),
                });
            };
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value: unescape_field_value(raw)?,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether an object satisfies every requirement; `field` gives the value of a field path,
    /// and a missing field counts as `""`.
    pub fn matches(&self, field: &dyn Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let have = field(&r.field).unwrap_or_default();
            (have == r.value) == (r.op == FieldOp::Equals)
        })
    }

    /// Whether the selector has no requirements and so matches everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, so a server can reject fields it does not support.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match r.op {
                FieldOp::Equals => "=",
                FieldOp::NotEquals => "!=",
            };
            write!(f, "{}{op}{}", r.field, escape_field_value(&r.value))?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// Splits at commas not escaped by a backslash.
fn split_unescaped_commas(input: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&input[start..i]);
            start = i + 1;
        }
    }
    terms.push(&input[start..]);
    terms
}

/// Splits a term at its first operator, preferring `!=` and `==` over `=`. Like Kubernetes, it
/// does not look at escapes: an escaped `=` belongs in values, not field names.
fn split_field_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        [
            (FieldOp::NotEquals, "!="),
            (FieldOp::Equals, "=="),
            (FieldOp::Equals, "="),
        ]
        .into_iter()
        .find_map(|(op, symbol)| {
            rest.strip_prefix(symbol)
                .map(|value| (&term[..i], op, value))
        })
    })
}

fn unescape_field_value(raw: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => return Err(SelectorError::InvalidEscape(format!("\\{e}"))),
                None => return Err(SelectorError::InvalidEscape("\\".to_string())),
            },
            ',' | '=' => return Err(SelectorError::UnescapedChar(c)),
            _ => out.push(c),
        }
    }
    Ok(out)
}

fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed selector of either kind.
    enum Selector {
        Labels(LabelSelector),
        Fields(FieldSelector),
    }

    /// A selector to parse.
    enum Input {
        Labels(String),
        Fields(String),
        Meta(metav1::LabelSelector),
    }

    fn labels(s: &str) -> Input {
        Input::Labels(s.to_string())
    }

    fn fields(s: &str) -> Input {
        Input::Fields(s.to_string())
    }

    fn meta(match_labels: &[(&str, &str)], exprs: &[(&str, &str, Option<&[&str]>)]) -> Input {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Input::Meta(metav1::LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| {
                match_labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }),
            match_expressions: (!exprs.is_empty()).then(|| {
                exprs
                    .iter()
                    .map(|(key, op, values)| metav1::LabelSelectorRequirement {
                        key: key.to_string(),
                        operator: op.to_string(),
                        values: values.map(strings),
                    })
                    .collect()
            }),
        })
    }

    /// The objects every selector is matched against: their labels, which double as the field
    /// values a field selector looks up.
    const OBJECTS: [&[(&str, &str)]; 4] = [
        &[],
        &[("app", "web"), ("metadata.name", "web")],
        &[
            ("app", "db"),
            ("tier", "backend"),
            ("metadata.name", "db"),
            ("status.phase", "Running"),
        ],
        &[
            ("app", "web"),
            ("tier", "frontend"),
            ("replicas", "3"),
            ("spec.nodeName", "node=1,a"),
        ],
    ];

    /// Parses `input`; expects its canonical form and whether it matches each of [`OBJECTS`], or
    /// an error whose message starts with the given text. Canonical forms must parse back to the
    /// same selector.
    fn check(input: Input, expected: Result<(&str, [bool; 4]), &str>) {
        let objects = OBJECTS.map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        });
        let (shown, got) = match &input {
            Input::Labels(s) => (s.clone(), LabelSelector::parse(s).map(Selector::Labels)),
            Input::Meta(m) => (
                format!("{m:?}"),
                LabelSelector::from_metav1(m).map(Selector::Labels),
            ),
            Input::Fields(s) => (s.clone(), FieldSelector::parse(s).map(Selector::Fields)),
        };
        let got = got.map(|sel| match sel {
            Selector::Labels(sel) => {
                let printed = sel.to_string();
                assert_eq!(
                    LabelSelector::parse(&printed).as_ref(),
                    Ok(&sel),
                    "{shown:.80}"
                );
                (
                    printed,
                    objects.each_ref().map(|o| sel.matches(o)),
                    sel.is_everything(),
                )
            }
            Selector::Fields(sel) => {
                let printed = sel.to_string();
                assert_eq!(
                    FieldSelector::parse(&printed).as_ref(),
                    Ok(&sel),
                    "{shown:.80}"
                );
                let matches = objects
                    .each_ref()
                    .map(|o| sel.matches(&|f| o.get(f).cloned()));
                (printed, matches, sel.is_everything())
            }
        });
        match (got, expected) {
            (Ok((printed, matches, everything)), Ok((want_printed, want_matches))) => {
                assert_eq!(printed, want_printed, "{shown:.80}");
                assert_eq!(matches, want_matches, "{shown:.80}");
                assert_eq!(everything, printed.is_empty(), "{shown:.80}");
            }
            (Err(e), Err(want)) => {
                let message = e.to_string();
                assert!(message.starts_with(want), "{shown:.80}: {message:.200}");
            }
            (got, want) => panic!("{shown:.80}: got {got:.200?}, want {want:?}"),
        }
    }

    #[test]
    fn label_selectors_parse_print_and_match_like_kubernetes() {
        for (input, expected) in [
            ("", Ok(("", [true; 4]))),
            ("  \t ", Ok(("", [true; 4]))),
            ("app=web", Ok(("app=web", [false, true, false, true]))),
            ("app == web", Ok(("app==web", [false, true, false, true]))),
            ("app!=web", Ok(("app!=web", [true, false, true, false]))),
            ("app", Ok(("app", [false, true, true, true]))),
            ("!app", Ok(("!app", [true, false, false, false]))),
            (" ! tier ", Ok(("!tier", [true, true, false, false]))),
            (
                "app in (web, db)",
                Ok(("app in (db,web)", [false, true, true, true])),
            ),
            (
                "tier notin (frontend)",
                Ok(("tier notin (frontend)", [true, true, true, false])),
            ),
            (
                "tier=backend,app",
                Ok(("app,tier=backend", [false, false, true, false])),
            ),
            ("app=", Ok(("app=", [false; 4]))),
            ("app in ()", Ok(("app in ()", [false; 4]))),
            ("app in (,,,)", Ok(("app in ()", [false; 4]))),
            (
                "app in (,web)",
                Ok(("app in (,web)", [false, true, false, true])),
            ),
            (
                "replicas>2",
                Ok(("replicas>2", [false, false, false, true])),
            ),
            ("replicas<2", Ok(("replicas<2", [false; 4]))),
            ("in in (in)", Ok(("in in (in)", [false; 4]))),
            (
                "app.kubernetes.io/name=web",
                Ok(("app.kubernetes.io/name=web", [false; 4])),
            ),
        ] {
            check(labels(input), expected);
        }
    }

    #[test]
    fn malformed_label_selectors_name_the_offending_text() {
        for (input, message) in [
            (
                ",",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            ("app=web,", "found '', expected: identifier after ','"),
            (
                "app=web tier",
                "found 'tier', expected: ',' or 'end of string'",
            ),
            ("!app=web", "found '=', expected: ',' or 'end of string'"),
            (
                "app in web",
                "unable to parse requirement: found 'web', expected: '('",
            ),
            (
                "app in (web",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "app = = web",
                "unable to parse requirement: found '=', expected: identifier",
            ),
            (
                "Bad Key=x",
                "unable to parse requirement: found 'Key', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "replicas>x",
                "unable to parse requirement: values for key \"replicas\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "bad_/key=x",
                "unable to parse requirement: invalid label key \"bad_/key\": prefix part",
            ),
            (
                "ключ=x",
                "unable to parse requirement: invalid label key \"ключ\"",
            ),
            (
                "app=-web",
                "unable to parse requirement: invalid label value \"-web\" for key \"app\"",
            ),
            (
                "app=ü",
                "unable to parse requirement: invalid label value \"ü\" for key \"app\"",
            ),
        ] {
            check(labels(input), Err(message));
        }
    }

    #[test]
    fn hostile_label_selectors_fail_without_panicking() {
        let deep = format!("a in {}x{}", "(".repeat(100_000), ")".repeat(100_000));
        let long_key = "k".repeat(1_000_000);
        let many = vec!["a"; 100_000].join(",");
        for (input, expected) in [
            (
                deep.as_str(),
                Err("unable to parse requirement: found '(', expected: ',', ')' or identifier"),
            ),
            (
                long_key.as_str(),
                Err("unable to parse requirement: invalid label key \"kkkk"),
            ),
            (
                &format!("a={}", "v".repeat(64)),
                Err("unable to parse requirement: invalid label value \"vvvv"),
            ),
            (
                "((((",
                Err("found '(', expected: !, identifier, or 'end of string'"),
            ),
            (
                "!!!!",
                Err("unable to parse requirement: found '!', expected: identifier"),
            ),
            (
                "a=\u{0}",
                Err("unable to parse requirement: invalid label value"),
            ),
            (
                "a\u{3000}=b",
                Err("unable to parse requirement: invalid label key"),
            ),
            (many.as_str(), Ok((many.as_str(), [false; 4]))),
        ] {
            check(labels(input), expected);
        }
    }

    #[test]
    fn metav1_selectors_convert_and_validate_their_operators() {
        for (input, expected) in [
            (meta(&[], &[]), Ok(("", [true; 4]))),
            (
                meta(&[("app", "web")], &[]),
                Ok(("app=web", [false, true, false, true])),
            ),
            (
                meta(
                    &[("tier", "backend")],
                    &[
                        ("app", "In", Some(&["web", "db"])),
                        ("x", "DoesNotExist", None),
                    ],
                ),
                Ok((
                    "app in (db,web),tier=backend,!x",
                    [false, false, true, false],
                )),
            ),
            (
                meta(
                    &[],
                    &[
                        ("app", "NotIn", Some(&["web"])),
                        ("tier", "Exists", Some(&[])),
                    ],
                ),
                Ok(("app notin (web),tier", [false, false, true, false])),
            ),
            (
                meta(&[], &[("app", "In", None)]),
                Err(
                    "values for key \"app\": for 'in', 'notin' operators, values set can't be empty",
                ),
            ),
            (
                meta(&[], &[("app", "Exists", Some(&["web"]))]),
                Err(
                    "values for key \"app\": values set must be empty for exists and does not exist",
                ),
            ),
            (
                meta(&[], &[("app", "Gt", Some(&["1"]))]),
                Err("\"Gt\" is not a valid label selector operator"),
            ),
            (
                meta(&[("app", "not valid")], &[]),
                Err("invalid label value \"not valid\" for key \"app\": a valid label must be"),
            ),
        ] {
            check(input, expected);
        }
    }

    #[test]
    fn field_selectors_parse_print_and_match_with_missing_fields_empty() {
        for (input, expected) in [
            ("", Ok(("", [true; 4]))),
            (
                "metadata.name=web",
                Ok(("metadata.name=web", [false, true, false, false])),
            ),
            (
                "metadata.name==web",
                Ok(("metadata.name=web", [false, true, false, false])),
            ),
            (
                "metadata.name!=web",
                Ok(("metadata.name!=web", [true, false, true, true])),
            ),
            (
                "status.phase!=Running,metadata.name=web",
                Ok((
                    "metadata.name=web,status.phase!=Running",
                    [false, true, false, false],
                )),
            ),
            (
                "status.phase=",
                Ok(("status.phase=", [true, true, false, true])),
            ),
            (
                "spec.nodeName=node\\=1\\,a",
                Ok(("spec.nodeName=node\\=1\\,a", [false, false, false, true])),
            ),
            (
                "metadata.name=a=b",
                Err("invalid field selector: unescaped character in value: ="),
            ),
            (
                "metadata.name=a\\b",
                Err("invalid field selector: invalid escape sequence: \\b"),
            ),
            (
                "a=\\",
                Err("invalid field selector: invalid escape sequence: \\"),
            ),
            (
                "metadata.name",
                Err("invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
            ),
            (
                "a=b,c",
                Err("invalid selector: 'a=b,c'; can't understand 'c'"),
            ),
            ("\\", Err("invalid selector: '\\'; can't understand '\\'")),
            (
                &"=".repeat(100_000),
                Err("invalid field selector: unescaped character in value: ="),
            ),
            (
                "ф=\u{0}\\",
                Err("invalid field selector: invalid escape sequence"),
            ),
        ] {
            check(fields(input), expected);
        }
    }

    #[test]
    fn field_requirements_are_exposed_sorted_and_unescaped() {
        let sel = FieldSelector::parse("spec.nodeName!=a\\,b,metadata.namespace=default").unwrap();
        let got: Vec<_> = sel
            .requirements()
            .iter()
            .map(|r| (r.field.as_str(), r.op, r.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("metadata.namespace", FieldOp::Equals, "default"),
                ("spec.nodeName", FieldOp::NotEquals, "a,b"),
            ]
        );
    }
}
