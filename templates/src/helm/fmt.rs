//! Go's `fmt.Sprintf` for template values: the verbs charts use (`%s %v %d %q %f %e %g %x %X
//! %t %c %%`), flags (`-`, `+`, `0`, space), width and precision, and Go's markers for wrong
//! or missing operands (`%!d(string=x)`, `%!s(MISSING)`).

use super::gotmpl::{Value, go_float, go_print};

/// Formats `args` by `format` as Go's `fmt.Sprintf` does.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero, mut space) = (false, false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = None;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = Some(width.unwrap_or(0) * 10 + d as usize);
            chars.next();
        }
        let mut prec = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = 0;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                p = p * 10 + d as usize;
                chars.next();
            }
            prec = Some(p);
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let bad = || format!("%!{verb}({}={})", arg.type_name(), go_print(arg));
        let mut s = match (verb, arg) {
            ('v', _) | ('s', Value::Str(_)) => match (verb, arg, prec) {
                ('s', Value::Str(s), Some(p)) => s.chars().take(p).collect(),
                _ => go_print(arg),
            },
            ('s', Value::List(_) | Value::Map(_) | Value::Nil) => match arg {
                Value::Nil => "%!s(<nil>)".into(),
                _ => go_print(arg),
            },
            ('d', Value::Int(i)) => sign(i.to_string(), *i >= 0, plus, space),
            ('f' | 'F', Value::Float(f)) => sign(
                format!("{:.*}", prec.unwrap_or(6), f.abs()),
                *f >= 0.0,
                plus,
                space,
            ),
            ('e', Value::Float(f)) => {
                sign(go_exp(f.abs(), prec.unwrap_or(6)), *f >= 0.0, plus, space)
            }
            ('g', Value::Float(f)) => sign(go_float(f.abs()), *f >= 0.0, plus, space),
            ('t', Value::Bool(b)) => b.to_string(),
            ('q', Value::Str(s)) => go_quote(s),
            ('q', Value::Int(i)) => {
                format!("'{}'", char::from_u32(*i as u32).unwrap_or('\u{fffd}'))
            }
            ('c', Value::Int(i)) => char::from_u32(*i as u32).unwrap_or('\u{fffd}').to_string(),
            ('x', Value::Int(i)) => format!("{i:x}"),
            ('X', Value::Int(i)) => format!("{i:X}"),
            ('o', Value::Int(i)) => format!("{i:o}"),
            ('b', Value::Int(i)) => format!("{i:b}"),
            ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('X', Value::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
            ('d' | 'x' | 'q' | 't' | 'f' | 'e' | 'g', Value::Nil) => format!("%!{verb}(<nil>)"),
            _ => bad(),
        };
        if let Some(w) = width {
            let len = s.chars().count();
            if len < w {
                let pad = w - len;
                if minus {
                    s.push_str(&" ".repeat(pad));
                } else if zero && matches!(arg, Value::Int(_) | Value::Float(_)) {
                    let (sgn, digits) = if s.starts_with(['-', '+']) {
                        s.split_at(1)
                    } else {
                        ("", s.as_str())
                    };
                    s = format!("{sgn}{}{digits}", "0".repeat(pad));
                } else {
                    s = format!("{}{s}", " ".repeat(pad));
                }
            }
        }
        out.push_str(&s);
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), go_print(a)))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn sign(digits: String, positive: bool, plus: bool, space: bool) -> String {
    if !positive {
        if digits.starts_with('-') {
            digits
        } else {
            format!("-{digits}")
        }
    } else if plus {
        format!("+{digits}")
    } else if space {
        format!(" {digits}")
    } else {
        digits
    }
}

fn go_exp(f: f64, prec: usize) -> String {
    let s = format!("{:.*e}", prec, f);
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// Go's `strconv.Quote`: double quotes, Go escapes, printable Unicode kept.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
