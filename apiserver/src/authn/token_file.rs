//! The static token file (`--token-auth-file`), Kubernetes' CSV format:
//! `token,user,uid,"group1,group2"` (groups optional; `#` lines and blank lines skipped).

use std::collections::HashMap;

use super::UserInfo;

/// A line of the token file that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct TokenFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Splits one CSV line into fields, honouring double quotes (`""` is a quote inside one).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            (false, ',') => {
                out.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted field".into());
    }
    out.push(field);
    Ok(out
        .into_iter()
        .map(|f| f.trim().to_string())
        .collect::<Vec<_>>())
}

/// Parses a token file into token → user.
pub fn parse(text: &str) -> Result<HashMap<String, UserInfo>, TokenFileError> {
    let mut tokens = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let err = |message: String| TokenFileError {
            line: i + 1,
            message,
        };
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let f = fields(line).map_err(err)?;
        if f.len() < 3 {
            return Err(err(format!(
                "expected token,user,uid[,\"group1,group2\"], got {} field(s)",
                f.len()
            )));
        }
        if f[0].is_empty() || f[1].is_empty() {
            return Err(err("the token and the user name must not be empty".into()));
        }
        let groups = f
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let user = UserInfo {
            name: f[1].clone(),
            uid: f[2].clone(),
            groups,
            ..Default::default()
        };
        if tokens.insert(f[0].clone(), user).is_some() {
            return Err(err("the token is listed twice".into()));
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token, user, uid, groups.
    type Entry<'a> = (&'a str, &'a str, &'a str, &'a [&'a str]);

    fn check(text: &str, expected: Result<Vec<Entry<'_>>, &str>) {
        let got = parse(text).map(|m| {
            let mut v: Vec<_> = m
                .into_iter()
                .map(|(t, u)| (t, u.name, u.uid, u.groups))
                .collect();
            v.sort();
            v
        });
        let expected = expected
            .map(|v| {
                v.into_iter()
                    .map(|(t, n, u, g)| {
                        (
                            t.to_string(),
                            n.to_string(),
                            u.to_string(),
                            g.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .map_err(str::to_string);
        assert_eq!(got.map_err(|e| e.to_string()), expected, "{text}");
    }

    #[test]
    fn token_files_are_read_like_kubernetes_csv() {
        check(
            "t1,jane,u1,\"dev,ops\"\n# comment\n\nt2,bob,u2\nt3, carl ,u3,qa\n",
            Ok(vec![
                ("t1", "jane", "u1", &["dev", "ops"]),
                ("t2", "bob", "u2", &[]),
                ("t3", "carl", "u3", &["qa"]),
            ]),
        );
        check(
            "t1,jane\n",
            Err("line 1: expected token,user,uid[,\"group1,group2\"], got 2 field(s)"),
        );
        check(
            "t1,jane,u\nt1,bob,u\n",
            Err("line 2: the token is listed twice"),
        );
        check(
            "t1,jane,u,\"dev\n",
            Err("line 1: unterminated quoted field"),
        );
        check(
            ",jane,u\n",
            Err("line 1: the token and the user name must not be empty"),
        );
    }
}
