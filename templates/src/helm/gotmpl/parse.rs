//! Lexing and parsing of Go `text/template` source into trees of [`Node`]s.
//!
//! Follows Go's grammar: actions between `{{` and `}}`, `{{-`/`-}}` trimming the adjacent
//! white space, comments `{{/* */}}`, pipelines with declarations (`$x :=`, `$x =`,
//! `$i, $v :=` in `range`), and the control structures `if`/`else if`/`with`/`else with`/
//! `range`/`break`/`continue`/`define`/`template`/`block`.

use super::Error;
use std::collections::HashMap;
use std::rc::Rc;

/// A position in a template's source: the byte offset.
pub type Pos = usize;

/// A parsed template body.
#[derive(Debug, Clone)]
pub struct Tree {
    /// The name of the template (the file name, or the `define`d name).
    pub name: String,
    /// The file the template was parsed from (for error positions).
    pub file: Rc<File>,
    /// The body.
    pub root: Vec<Node>,
}

/// A source file's name and text, for turning positions into lines and columns.
#[derive(Debug)]
pub struct File {
    /// The name used in messages.
    pub name: String,
    /// The text.
    pub text: String,
}

impl File {
    /// The 1-based line and column of byte offset `pos`.
    pub fn line_col(&self, pos: Pos) -> (usize, usize) {
        let before = &self.text[..pos.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rfind('\n').map(|i| pos - i - 1).unwrap_or(pos);
        (line, col)
    }
}

/// A node of a template body.
#[derive(Debug, Clone)]
pub enum Node {
    /// Literal text.
    Text(Rc<str>),
    /// `{{ pipeline }}`: evaluates and prints (unless the pipeline declares variables).
    Action(Pipe),
    /// `if`/`with`: the pipe, the branch when true, the `else` branch.
    If {
        /// `with` rebinds the dot.
        with: bool,
        /// The condition.
        pipe: Pipe,
        /// Taken when true.
        then: Vec<Node>,
        /// Taken when false.
        otherwise: Vec<Node>,
    },
    /// `range pipe`: body per element, `else` when empty.
    Range {
        /// The collection.
        pipe: Pipe,
        /// The body.
        body: Vec<Node>,
        /// Run when there is nothing to iterate.
        otherwise: Vec<Node>,
    },
    /// `template "name" pipe`.
    Template {
        /// Where the action is.
        pos: Pos,
        /// The template's name.
        name: String,
        /// Its data (`nil` when absent).
        pipe: Option<Pipe>,
    },
    /// `break`.
    Break,
    /// `continue`.
    Continue,
}

/// A pipeline: optional variable declarations and commands joined by `|`.
#[derive(Debug, Clone)]
pub struct Pipe {
    /// Where the pipeline starts.
    pub pos: Pos,
    /// Variables assigned (`$x :=` or `$x =`).
    pub decl: Vec<String>,
    /// Whether the variables are declared (`:=`) rather than assigned (`=`).
    pub declare: bool,
    /// The commands.
    pub cmds: Vec<Cmd>,
}

/// One command of a pipeline: operands, the first possibly a function.
#[derive(Debug, Clone)]
pub struct Cmd {
    /// Where the command starts.
    pub pos: Pos,
    /// The operands.
    pub args: Vec<Arg>,
}

/// An operand.
#[derive(Debug, Clone)]
pub enum Arg {
    /// A function name.
    Ident(String),
    /// `.A.B` (empty for `.`).
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    /// `(pipeline).A.B`.
    Pipe(Box<Pipe>, Vec<String>),
    /// A string literal.
    Str(Rc<str>),
    /// An integer literal.
    Int(i64),
    /// A floating-point literal.
    Float(f64),
    /// `true`/`false`.
    Bool(bool),
    /// `nil`.
    Nil,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Text(String),
    Open,
    Close,
    Ident(String),
    Field(Vec<String>),
    Var(String, Vec<String>),
    Chain(Vec<String>),
    Str(String),
    Num(String),
    Char(i64),
    Dot,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
}

struct Lexer<'a> {
    file: &'a File,
    src: &'a str,
    pos: usize,
    toks: Vec<(Tok, Pos)>,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl<'a> Lexer<'a> {
    fn err(&self, pos: Pos, message: impl Into<String>) -> Error {
        let (line, col) = self.file.line_col(pos);
        Error {
            file: self.file.name.clone(),
            line,
            message: format!(
                "template: {}:{}:{}: {}",
                self.file.name,
                line,
                col,
                message.into()
            ),
        }
    }

    fn run(mut self) -> Result<Vec<(Tok, Pos)>, Error> {
        let b = self.src.as_bytes();
        let mut trim_next = false;
        while self.pos < b.len() {
            let start = self.pos;
            let open = self.src[start..].find("{{").map(|i| start + i);
            let end = open.unwrap_or(b.len());
            let mut text = &self.src[start..end];
            if trim_next {
                text = text.trim_start_matches([' ', '\t', '\r', '\n']);
            }
            trim_next = false;
            let Some(open) = open else {
                if !text.is_empty() {
                    self.toks.push((Tok::Text(text.to_string()), start));
                }
                break;
            };
            let mut inner = open + 2;
            if b.len() > inner + 1 && b[inner] == b'-' && is_space(b[inner + 1]) {
                text = text.trim_end_matches([' ', '\t', '\r', '\n']);
                inner += 2;
            }
            if !text.is_empty() {
                self.toks.push((Tok::Text(text.to_string()), start));
            }
            // Comments.
            let rest = &self.src[inner..];
            let lead = rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
            if rest[lead..].starts_with("/*") {
                let Some(close) = rest[lead..].find("*/") else {
                    return Err(self.err(open, "unclosed comment"));
                };
                let after = inner + lead + close + 2;
                let tail = &self.src[after..];
                if let Some(t) = tail.strip_prefix(" -}}").or(tail.strip_prefix("\n-}}")) {
                    trim_next = true;
                    self.pos = self.src.len() - t.len();
                } else if tail.starts_with("}}") {
                    self.pos = after + 2;
                } else if let Some(t) = tail
                    .trim_start_matches([' ', '\t', '\r', '\n'])
                    .strip_prefix("-}}")
                {
                    trim_next = true;
                    self.pos = self.src.len() - t.len();
                } else if let Some(t) = tail
                    .trim_start_matches([' ', '\t', '\r', '\n'])
                    .strip_prefix("}}")
                {
                    self.pos = self.src.len() - t.len();
                } else {
                    return Err(self.err(open, "comment ends before closing delimiter"));
                }
                continue;
            }
            self.toks.push((Tok::Open, open));
            self.pos = inner;
            trim_next = self.action()?;
            self.toks.push((Tok::Close, self.pos));
        }
        Ok(self.toks)
    }

    /// Lexes one action up to and including `}}`; returns whether it ended with `-}}`.
    fn action(&mut self) -> Result<bool, Error> {
        let b = self.src.as_bytes();
        let open = self.pos;
        loop {
            if self.pos >= b.len() {
                return Err(self.err(open, "unclosed action"));
            }
            let c = b[self.pos];
            let start = self.pos;
            if is_space(c) {
                let rest = &self.src[self.pos..];
                let ws = rest.len() - rest.trim_start_matches([' ', '\t', '\r', '\n']).len();
                if rest[ws..].starts_with("-}}") {
                    self.pos += ws + 3;
                    return Ok(true);
                }
                self.pos += ws;
                continue;
            }
            if self.src[self.pos..].starts_with("}}") {
                self.pos += 2;
                return Ok(false);
            }
            match c {
                b'|' => {
                    self.pos += 1;
                    self.toks.push((Tok::Pipe, start));
                }
                b'(' => {
                    self.pos += 1;
                    self.toks.push((Tok::LParen, start));
                }
                b')' => {
                    self.pos += 1;
                    self.toks.push((Tok::RParen, start));
                    // A field chain may follow a parenthesized pipeline.
                    let chain = self.chain();
                    if !chain.is_empty() {
                        self.toks.push((Tok::Chain(chain), start));
                    }
                }
                b',' => {
                    self.pos += 1;
                    self.toks.push((Tok::Comma, start));
                }
                b':' if b.get(self.pos + 1) == Some(&b'=') => {
                    self.pos += 2;
                    self.toks.push((Tok::Declare, start));
                }
                b'=' => {
                    self.pos += 1;
                    self.toks.push((Tok::Assign, start));
                }
                b'"' => {
                    let s = self.quoted()?;
                    self.toks.push((Tok::Str(s), start));
                }
                b'`' => {
                    let Some(end) = self.src[self.pos + 1..].find('`') else {
                        return Err(self.err(start, "unterminated raw quoted string"));
                    };
                    let s = self.src[self.pos + 1..self.pos + 1 + end].to_string();
                    self.pos += end + 2;
                    self.toks.push((Tok::Str(s), start));
                }
                b'\'' => {
                    let rest = &self.src[self.pos + 1..];
                    let Some(end) = rest.find('\'') else {
                        return Err(self.err(start, "unterminated character constant"));
                    };
                    let body = &rest[..end];
                    let ch = if let Some(esc) = body.strip_prefix('\\') {
                        match esc {
                            "n" => '\n',
                            "t" => '\t',
                            "\\" => '\\',
                            "'" => '\'',
                            _ => return Err(self.err(start, "bad character constant")),
                        }
                    } else {
                        body.chars()
                            .next()
                            .ok_or_else(|| self.err(start, "empty character constant"))?
                    };
                    self.pos += end + 2;
                    self.toks.push((Tok::Char(ch as i64), start));
                }
                b'$' => {
                    let n = self.word_len(self.pos + 1);
                    let name = self.src[self.pos..self.pos + 1 + n].to_string();
                    self.pos += 1 + n;
                    let chain = self.chain();
                    self.toks.push((Tok::Var(name, chain), start));
                }
                b'.' => {
                    let n = self.word_len(self.pos + 1);
                    if n == 0 {
                        if b.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
                            let s = self.number();
                            self.toks.push((Tok::Num(s), start));
                        } else {
                            self.pos += 1;
                            self.toks.push((Tok::Dot, start));
                        }
                    } else {
                        let chain = self.chain();
                        self.toks.push((Tok::Field(chain), start));
                    }
                }
                b'0'..=b'9' | b'-' | b'+' => {
                    let s = self.number();
                    if s.is_empty() || s == "-" || s == "+" {
                        return Err(self.err(start, format!("bad character {:?}", c as char)));
                    }
                    self.toks.push((Tok::Num(s), start));
                }
                _ if c == b'_' || c.is_ascii_alphabetic() => {
                    let n = self.word_len(self.pos);
                    let name = self.src[self.pos..self.pos + n].to_string();
                    self.pos += n;
                    self.toks.push((Tok::Ident(name), start));
                }
                _ => {
                    let ch = self.src[self.pos..].chars().next().unwrap_or('?');
                    return Err(self.err(start, format!("unexpected {ch:?} in command")));
                }
            }
        }
    }

    /// Reads `.a.b.c` directly at the cursor.
    fn chain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while self.src.as_bytes().get(self.pos) == Some(&b'.') {
            let n = self.word_len(self.pos + 1);
            if n == 0 {
                break;
            }
            out.push(self.src[self.pos + 1..self.pos + 1 + n].to_string());
            self.pos += 1 + n;
        }
        out
    }

    fn word_len(&self, from: usize) -> usize {
        self.src[from..]
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map(|(i, _)| i)
            .unwrap_or(self.src.len() - from)
    }

    fn number(&mut self) -> String {
        let b = self.src.as_bytes();
        let start = self.pos;
        let mut i = self.pos;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        while i < b.len() {
            let c = b[i];
            let exp_sign = (c == b'-' || c == b'+')
                && i > start
                && matches!(b[i - 1], b'e' | b'E' | b'p' | b'P')
                && !self.src[start..i].starts_with("0x");
            if c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || exp_sign {
                i += 1;
            } else {
                break;
            }
        }
        self.pos = i;
        self.src[start..i].to_string()
    }

    fn quoted(&mut self) -> Result<String, Error> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.src[self.pos + 1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = start + 1 + i + 1;
                    return Ok(out);
                }
                '\n' => break,
                '\\' => {
                    let Some((_, e)) = chars.next() else { break };
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '\\' => out.push('\\'),
                        '"' => out.push('"'),
                        '\'' => out.push('\''),
                        'a' => out.push('\x07'),
                        'b' => out.push('\x08'),
                        'f' => out.push('\x0c'),
                        'v' => out.push('\x0b'),
                        'x' | 'u' | 'U' => {
                            let n = match e {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let mut code = 0u32;
                            for _ in 0..n {
                                let d = chars.next().and_then(|(_, h)| h.to_digit(16));
                                let Some(d) = d else {
                                    return Err(self.err(start, "bad escape in string"));
                                };
                                code = code * 16 + d;
                            }
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        _ => return Err(self.err(start, "unknown escape sequence")),
                    }
                }
                c => out.push(c),
            }
        }
        Err(self.err(start, "unterminated quoted string"))
    }
}

/// Parses `text` (from file `file`), returning the body named `name` and every `define`d
/// template.
pub fn parse(file: &str, name: &str, text: &str) -> Result<(Tree, HashMap<String, Tree>), Error> {
    let file = Rc::new(File {
        name: file.to_string(),
        text: text.to_string(),
    });
    let toks = Lexer {
        file: &file,
        src: text,
        pos: 0,
        toks: Vec::new(),
    }
    .run()?;
    let mut p = Parser {
        file: file.clone(),
        toks,
        i: 0,
        defines: HashMap::new(),
        loops: 0,
    };
    let (root, end) = p.list()?;
    if let Some((word, pos)) = end {
        return Err(p.err(pos, format!("unexpected {{{{{word}}}}}")));
    }
    let tree = Tree {
        name: name.to_string(),
        file,
        root,
    };
    Ok((tree, p.defines))
}

/// The keyword (`end`, `else`) that ended a list, and where.
type Stop = Option<(String, Pos)>;

struct Parser {
    file: Rc<File>,
    toks: Vec<(Tok, Pos)>,
    i: usize,
    defines: HashMap<String, Tree>,
    loops: usize,
}

impl Parser {
    fn err(&self, pos: Pos, message: impl Into<String>) -> Error {
        let (line, col) = self.file.line_col(pos);
        Error {
            file: self.file.name.clone(),
            line,
            message: format!(
                "template: {}:{}:{}: {}",
                self.file.name,
                line,
                col,
                message.into()
            ),
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.0)
    }

    fn pos(&self) -> Pos {
        self.toks
            .get(self.i)
            .or(self.toks.last())
            .map(|t| t.1)
            .unwrap_or(0)
    }

    fn next(&mut self) -> Option<(Tok, Pos)> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn expect_close(&mut self) -> Result<(), Error> {
        match self.next() {
            Some((Tok::Close, _)) => Ok(()),
            Some((t, pos)) => Err(self.err(pos, format!("unexpected {t:?} in action"))),
            None => Err(self.err(self.pos(), "unclosed action")),
        }
    }

    /// Parses nodes until `{{end}}`, `{{else …}}` or the end; returns the nodes and the keyword
    /// that stopped the list (with the tokens after it still to read).
    fn list(&mut self) -> Result<(Vec<Node>, Stop), Error> {
        let mut nodes = Vec::new();
        while let Some((tok, pos)) = self.next() {
            match tok {
                Tok::Text(t) => nodes.push(Node::Text(t.into())),
                Tok::Open => {
                    let word = match self.peek() {
                        Some(Tok::Ident(w)) => w.clone(),
                        _ => String::new(),
                    };
                    match word.as_str() {
                        "end" | "else" => {
                            self.i += 1;
                            return Ok((nodes, Some((word, pos))));
                        }
                        "if" | "with" => {
                            self.i += 1;
                            nodes.push(self.if_node(word == "with")?);
                        }
                        "range" => {
                            self.i += 1;
                            let pipe = self.pipe(pos, true)?;
                            self.loops += 1;
                            let (body, end) = self.list()?;
                            self.loops -= 1;
                            let otherwise = match end {
                                Some((w, _)) if w == "end" => {
                                    self.expect_close()?;
                                    Vec::new()
                                }
                                Some((w, p)) if w == "else" => {
                                    self.expect_close()?;
                                    let (o, end) = self.list()?;
                                    match end {
                                        Some((w, _)) if w == "end" => self.expect_close()?,
                                        _ => return Err(self.err(p, "expected end")),
                                    }
                                    o
                                }
                                _ => return Err(self.err(pos, "unexpected EOF in range")),
                            };
                            nodes.push(Node::Range {
                                pipe,
                                body,
                                otherwise,
                            });
                        }
                        "break" | "continue" => {
                            self.i += 1;
                            if self.loops == 0 {
                                return Err(
                                    self.err(pos, format!("{{{{{word}}}}} outside {{{{range}}}}"))
                                );
                            }
                            self.expect_close()?;
                            nodes.push(if word == "break" {
                                Node::Break
                            } else {
                                Node::Continue
                            });
                        }
                        "define" | "block" => {
                            self.i += 1;
                            let name = match self.next() {
                                Some((Tok::Str(s), _)) => s,
                                _ => {
                                    return Err(
                                        self.err(pos, format!("{word} needs a name string"))
                                    );
                                }
                            };
                            let pipe = if word == "block" {
                                Some(self.pipe(pos, false)?)
                            } else {
                                self.expect_close()?;
                                None
                            };
                            let loops = std::mem::take(&mut self.loops);
                            let (body, end) = self.list()?;
                            self.loops = loops;
                            match end {
                                Some((w, _)) if w == "end" => self.expect_close()?,
                                _ => return Err(self.err(pos, format!("unexpected EOF in {word}"))),
                            }
                            self.defines.insert(
                                name.clone(),
                                Tree {
                                    name: name.clone(),
                                    file: self.file.clone(),
                                    root: body,
                                },
                            );
                            if pipe.is_some() {
                                nodes.push(Node::Template { pos, name, pipe });
                            }
                        }
                        "template" => {
                            self.i += 1;
                            let name = match self.next() {
                                Some((Tok::Str(s), _)) => s,
                                _ => return Err(self.err(pos, "template needs a name string")),
                            };
                            let pipe = if self.peek() == Some(&Tok::Close) {
                                self.i += 1;
                                None
                            } else {
                                Some(self.pipe(pos, false)?)
                            };
                            nodes.push(Node::Template { pos, name, pipe });
                        }
                        _ => nodes.push(Node::Action(self.pipe(pos, false)?)),
                    }
                }
                t => return Err(self.err(pos, format!("unexpected {t:?}"))),
            }
        }
        Ok((nodes, None))
    }

    fn if_node(&mut self, with: bool) -> Result<Node, Error> {
        let pos = self.pos();
        let pipe = self.pipe(pos, false)?;
        let (then, end) = self.list()?;
        let otherwise = match end {
            Some((w, _)) if w == "end" => {
                self.expect_close()?;
                Vec::new()
            }
            Some((w, p)) if w == "else" => {
                // `else if …` / `else with …` chain into a nested node with one shared end.
                match self.peek() {
                    Some(Tok::Ident(k)) if k == "if" || k == "with" => {
                        let nested_with = k == "with";
                        self.i += 1;
                        vec![self.if_node(nested_with)?]
                    }
                    _ => {
                        self.expect_close()?;
                        let (o, end) = self.list()?;
                        match end {
                            Some((w, _)) if w == "end" => self.expect_close()?,
                            _ => return Err(self.err(p, "expected end")),
                        }
                        o
                    }
                }
            }
            _ => return Err(self.err(pos, "unexpected EOF")),
        };
        Ok(Node::If {
            with,
            pipe,
            then,
            otherwise,
        })
    }

    /// Parses a pipeline up to `}}` (or `)` when `paren`).
    fn pipe_until(&mut self, pos: Pos, allow_two: bool, paren: bool) -> Result<Pipe, Error> {
        let mut decl = Vec::new();
        let mut declare = true;
        // Declarations: `$x :=`, `$x =`, `$i, $v :=`.
        if let Some(Tok::Var(_, _)) = self.peek() {
            let save = self.i;
            let mut names = Vec::new();
            while let Some((Tok::Var(v, chain), _)) = self.toks.get(self.i).cloned() {
                if !chain.is_empty() {
                    break;
                }
                names.push(v);
                self.i += 1;
                match self.peek() {
                    Some(Tok::Comma) if allow_two && names.len() < 2 => self.i += 1,
                    _ => break,
                }
            }
            match self.peek() {
                Some(Tok::Declare) => {
                    self.i += 1;
                    decl = names;
                }
                Some(Tok::Assign) => {
                    self.i += 1;
                    decl = names;
                    declare = false;
                }
                _ => self.i = save,
            }
        }
        let mut cmds = Vec::new();
        loop {
            let cpos = self.pos();
            let mut args = Vec::new();
            loop {
                match self.peek() {
                    Some(Tok::Close) if !paren => break,
                    Some(Tok::RParen) if paren => break,
                    Some(Tok::Pipe) => break,
                    None => return Err(self.err(pos, "unclosed action")),
                    _ => args.push(self.operand()?),
                }
            }
            if args.is_empty() {
                return Err(self.err(cpos, "missing value for command"));
            }
            cmds.push(Cmd { pos: cpos, args });
            match self.next() {
                Some((Tok::Pipe, _)) => continue,
                _ => break,
            }
        }
        Ok(Pipe {
            pos,
            decl,
            declare,
            cmds,
        })
    }

    fn pipe(&mut self, pos: Pos, allow_two: bool) -> Result<Pipe, Error> {
        self.pipe_until(pos, allow_two, false)
    }

    fn fields(&mut self) -> Vec<String> {
        if let Some(Tok::Chain(c)) = self.peek() {
            let c = c.clone();
            self.i += 1;
            return c;
        }
        Vec::new()
    }

    fn operand(&mut self) -> Result<Arg, Error> {
        let Some((tok, pos)) = self.next() else {
            return Err(self.err(self.pos(), "unexpected end"));
        };
        Ok(match tok {
            Tok::Ident(w) => match w.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => Arg::Ident(w),
            },
            Tok::Dot => Arg::Field(Vec::new()),
            Tok::Field(f) => Arg::Field(f),
            Tok::Var(v, f) => Arg::Var(v, f),
            Tok::Str(s) => Arg::Str(s.into()),
            Tok::Char(c) => Arg::Int(c),
            Tok::Num(n) => {
                number(&n).ok_or_else(|| self.err(pos, format!("bad number syntax: {n:?}")))?
            }
            Tok::LParen => {
                let p = self.pipe_until(pos, false, true)?;
                let f = self.fields();
                Arg::Pipe(Box::new(p), f)
            }
            t => return Err(self.err(pos, format!("unexpected {t:?} in operand"))),
        })
    }
}

fn number(text: &str) -> Option<Arg> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let int = if let Some(h) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(o) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()
    } else if let Some(b) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        i64::from_str_radix(b, 2).ok()
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&body[1..], 8).ok()
    } else {
        body.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Some(Arg::Int(if neg { -i } else { i }));
    }
    let f: f64 = body.parse().ok()?;
    Some(Arg::Float(if neg { -f } else { f }))
}
