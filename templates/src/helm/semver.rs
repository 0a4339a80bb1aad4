//! Semantic versions and constraints as Helm reads them (Masterminds/semver v3): `semverCompare`,
//! `kubeVersion` in Chart.yaml, and version ranges of chart repositories.
//!
//! Constraints: comparisons `= != > >= < <=`, `~` (patch range), `^` (minor range), `x`/`*`
//! wildcards, hyphen ranges `1.2 - 1.4`, `,` or spaces for AND, `||` for OR. As in
//! Masterminds, a prerelease version satisfies a constraint only when the constraint itself has a
//! prerelease (`>= 1.21-0` admits `1.30.2-eks`).

use std::cmp::Ordering;

/// A parsed version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// Major, minor, patch.
    pub nums: [u64; 3],
    /// The prerelease (after `-`), empty when none.
    pub pre: String,
}

impl Version {
    /// Parses `v1.2.3-pre+meta` (the `v`, minor and patch optional).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let s = s.split('+').next().unwrap_or(s);
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, p.to_string()),
            None => (s, String::new()),
        };
        let mut nums = [0u64; 3];
        let parts: Vec<&str> = core.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        for (i, p) in parts.iter().enumerate() {
            nums[i] = p.parse().ok()?;
        }
        Some(Version { nums, pre })
    }

    fn cmp_pre(&self, other: &Version) -> Ordering {
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                let a: Vec<&str> = self.pre.split('.').collect();
                let b: Vec<&str> = other.pre.split('.').collect();
                for (x, y) in a.iter().zip(b.iter()) {
                    let o = match (x.parse::<u64>(), y.parse::<u64>()) {
                        (Ok(p), Ok(q)) => p.cmp(&q),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        _ => x.cmp(y),
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nums.cmp(&other.nums).then_with(|| self.cmp_pre(other))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Term {
    op: String,
    v: Version,
    /// How many of major.minor.patch were given (wildcards count as absent).
    given: usize,
}

/// A parsed constraint: OR of ANDs.
pub struct Constraint {
    any: Vec<Vec<Term>>,
}

impl Constraint {
    /// Parses a constraint; `Err` says what is wrong.
    pub fn parse(s: &str) -> Result<Constraint, String> {
        let mut any = Vec::new();
        for alt in s.split("||") {
            let mut all = Vec::new();
            let normalized = alt.replace(',', " ");
            let toks: Vec<&str> = normalized.split_whitespace().collect();
            let mut i = 0;
            while i < toks.len() {
                let mut tok = toks[i].to_string();
                // An operator separated from its version by a space.
                if tok.chars().all(|c| "<>=!~^".contains(c)) && i + 1 < toks.len() {
                    tok.push_str(toks[i + 1]);
                    i += 1;
                }
                // Hyphen range `a - b`.
                if i + 2 < toks.len() && toks[i + 1] == "-" {
                    all.push(term(&format!(">={tok}"))?);
                    all.push(term(&format!("<={}", toks[i + 2]))?);
                    i += 3;
                    continue;
                }
                all.push(term(&tok)?);
                i += 1;
            }
            if all.is_empty() {
                return Err(format!("improper constraint: {s}"));
            }
            any.push(all);
        }
        Ok(Constraint { any })
    }

    /// Whether `v` satisfies the constraint.
    pub fn matches(&self, v: &Version) -> bool {
        self.any.iter().any(|all| {
            all.iter().all(|t| t.matches(v))
                && (v.pre.is_empty() || all.iter().any(|t| !t.v.pre.is_empty()))
        })
    }
}

fn term(tok: &str) -> Result<Term, String> {
    let op_len = tok
        .find(|c: char| !"<>=!~^".contains(c))
        .unwrap_or(tok.len());
    let op = tok[..op_len].to_string();
    let rest = tok[op_len..].trim();
    let rest = rest.strip_prefix('v').unwrap_or(rest);
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, p),
        None => (rest, ""),
    };
    let core = core.split('+').next().unwrap_or(core);
    let mut nums = [0u64; 3];
    let mut given = 0;
    for (i, p) in core.split('.').enumerate() {
        if i > 2 {
            return Err(format!("improper constraint: {tok}"));
        }
        if p == "x" || p == "X" || p == "*" {
            break;
        }
        nums[i] = p
            .parse()
            .map_err(|_| format!("improper constraint: {tok}"))?;
        given = i + 1;
    }
    if !matches!(
        op.as_str(),
        "" | "=" | "==" | "!=" | ">" | ">=" | "=>" | "<" | "<=" | "=<" | "~" | "~>" | "^"
    ) {
        return Err(format!("improper constraint: {tok}"));
    }
    Ok(Term {
        op,
        v: Version {
            nums,
            pre: pre.to_string(),
        },
        given,
    })
}

impl Term {
    fn matches(&self, v: &Version) -> bool {
        let c = &self.v;
        let upper = |level: usize| {
            let mut n = c.nums;
            if level == 0 {
                n = [n[0] + 1, 0, 0];
            } else {
                n = [n[0], n[1] + 1, 0];
            }
            Version {
                nums: n,
                pre: String::new(),
            }
        };
        let lt_upper = |u: Version| v.nums < u.nums;
        match self.op.as_str() {
            "" | "=" | "==" => {
                if self.given < 3 {
                    (0..self.given).all(|i| v.nums[i] == c.nums[i])
                } else {
                    v == c
                }
            }
            "!=" => {
                if self.given < 3 {
                    !(0..self.given).all(|i| v.nums[i] == c.nums[i])
                } else {
                    v != c
                }
            }
            ">" => {
                if self.given < 3 && self.given > 0 {
                    v.nums[..self.given] > c.nums[..self.given]
                } else {
                    v > c
                }
            }
            ">=" | "=>" => v >= c,
            "<" => v < c,
            "<=" | "=<" => {
                if self.given < 3 {
                    (v.nums[..self.given] <= c.nums[..self.given]) || self.given == 0
                } else {
                    v <= c
                }
            }
            "~" | "~>" => v >= c && lt_upper(upper(if self.given <= 1 { 0 } else { 1 })),
            "^" => {
                let level = if c.nums[0] > 0 || self.given <= 1 {
                    0
                } else if c.nums[1] > 0 || self.given <= 2 {
                    1
                } else {
                    return v.nums == c.nums;
                };
                v >= c && lt_upper(upper(level))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_follow_masterminds() {
        let table = [
            (">= 1.21-0", "1.32.0", true),
            (">= 1.33-0", "1.32.0", false),
            (">= 1.33-0", "1.33.1", true),
            ("<1.25-0", "v1.32.0", false),
            (">=1.19.0", "1.30.2-eks", false),
            (">=1.19.0-0", "1.30.2-eks", true),
            ("^1.2.3", "1.9.0", true),
            ("^1.2.3", "2.0.0", false),
            ("~1.2.3", "1.2.9", true),
            ("~1.2.3", "1.3.0", false),
            ("1.2.x", "1.2.7", true),
            (">1.0 <2.0 || 3.x", "3.1.0", true),
            ("1.0 - 1.4", "1.4.0", true),
        ];
        for (c, v, want) in table {
            let got = Constraint::parse(c)
                .expect(c)
                .matches(&Version::parse(v).expect(v));
            assert_eq!(got, want, "{c} {v}");
        }
    }
}
