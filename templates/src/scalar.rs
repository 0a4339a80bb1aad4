//! libyaml's scalar analysis and double-quoted escapes, shared by the two YAML writers: go-yaml
//! v3's as kustomize drives it ([`crate::yaml`]) and yaml.v2's as Helm's `toYaml` drives it
//! (`helm::goyaml`). The two differ only in which characters they count as printable, which each
//! passes in.

/// What the characters of a scalar allow (libyaml's `yaml_emitter_analyze_scalar`, block
/// context).
pub(crate) struct Analysis {
    /// It holds a line break.
    pub multiline: bool,
    /// It may be written plain.
    pub block_plain: bool,
    /// It may be written in single quotes.
    pub single: bool,
    /// It may be written as a literal block.
    pub block: bool,
}

/// A YAML line break.
fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// libyaml's `IS_BLANKZ`: a space, tab, break, NUL or the end.
fn is_blankz(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => c == ' ' || c == '\t' || is_break(c) || c == '\0',
    }
}

/// What the characters of `s` allow; `printable` is the writer's set of printable characters.
/// The empty string may be written plain or quoted, not as a block.
pub(crate) fn analyze(s: &str, printable: fn(char) -> bool) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain: true,
            single: true,
            block: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break, mut previous_space, mut previous_break) =
        (false, false, false, false);
    let (mut line_breaks, mut special_characters) = (false, false);
    let mut preceded_by_whitespace = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = is_blankz(chars.get(i + 1).copied());
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                block_indicators = true;
            }
            if (c == '?' || c == ':' || c == '-') && followed_by_whitespace {
                block_indicators = true;
            }
        } else if (c == ':' && followed_by_whitespace) || (c == '#' && preceded_by_whitespace) {
            block_indicators = true;
        }
        if !printable(c) {
            special_characters = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        let first = i == 0;
        let last = i + 1 == chars.len();
        if c == ' ' {
            leading_space |= first;
            trailing_space |= last;
            break_space |= previous_break;
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            leading_break |= first;
            trailing_break |= last;
            space_break |= previous_space;
            previous_break = true;
            previous_space = false;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blankz(Some(c));
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain: true,
        single: true,
        block: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain = false;
    }
    if trailing_space {
        a.block = false;
    }
    if break_space {
        a.block_plain = false;
        a.single = false;
    }
    if space_break || special_characters {
        a.block_plain = false;
        a.single = false;
        a.block = false;
    }
    if line_breaks || block_indicators {
        a.block_plain = false;
    }
    a
}

/// The escape of `c` inside double quotes (with its backslash), or `None` where `c` stands as
/// it is; `printable` is the writer's set of printable characters.
pub(crate) fn double_quoted_escape(c: char, printable: fn(char) -> bool) -> Option<String> {
    if printable(c) && c != '\u{feff}' && !is_break(c) && c != '"' && c != '\\' {
        return None;
    }
    Some(match c {
        '\0' => "\\0".to_string(),
        '\u{7}' => "\\a".to_string(),
        '\u{8}' => "\\b".to_string(),
        '\t' => "\\t".to_string(),
        '\n' => "\\n".to_string(),
        '\u{b}' => "\\v".to_string(),
        '\u{c}' => "\\f".to_string(),
        '\r' => "\\r".to_string(),
        '\u{1b}' => "\\e".to_string(),
        '"' => "\\\"".to_string(),
        '\\' => "\\\\".to_string(),
        '\u{85}' => "\\N".to_string(),
        '\u{a0}' => "\\_".to_string(),
        '\u{2028}' => "\\L".to_string(),
        '\u{2029}' => "\\P".to_string(),
        c if (c as u32) <= 0xff => format!("\\x{:02X}", c as u32),
        c if (c as u32) <= 0xffff => format!("\\u{:04X}", c as u32),
        c => format!("\\U{:08X}", c as u32),
    })
}
