//! Resource quantities (`100m`, `1Gi`, `2`): parsed into thousandths or whole units, and
//! written back the way Kubernetes writes them.

/// Parses a quantity into thousandths of a unit, rounding up (`100m` → 100, `2` → 2000).
pub fn parse_milli(s: &str) -> Option<i64> {
    parse(s).map(|v| (v * 1000.0).ceil() as i64)
}

/// Parses a quantity into whole units, rounding up (`1Gi` → 1073741824, `500m` → 1).
pub fn parse_units(s: &str) -> Option<i64> {
    parse(s).map(|v| v.ceil() as i64)
}

/// Parses a quantity into a number of units (`100m` → 0.1, `64Mi` → 67108864).
pub fn parse(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// Writes thousandths of a unit as Kubernetes would: `500m`, `2`, and whole byte counts with
/// the largest binary suffix that divides them (`128Mi`).
pub fn format_milli(milli: i64) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    if units != 0 {
        for (suffix, factor) in [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ] {
            let f = 1i64 << factor;
            if units % f == 0 && units.abs() >= f {
                return format!("{}{suffix}", units / f);
            }
        }
    }
    units.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, milli: Option<i64>, units: Option<i64>) {
        assert_eq!(parse_milli(input), milli, "milli of {input}");
        assert_eq!(parse_units(input), units, "units of {input}");
    }

    #[test]
    fn quantities_parse_with_every_suffix_and_print_back() {
        check("100m", Some(100), Some(1));
        check("2", Some(2000), Some(2));
        check("1Gi", Some(1073741824000), Some(1073741824));
        check("1.5", Some(1500), Some(2));
        check("1e3", Some(1_000_000), Some(1000));
        check("1Ki", Some(1_024_000), Some(1024));
        check("1k", Some(1_000_000), Some(1000));
        check("250M", Some(250_000_000_000), Some(250_000_000));
        check("x", None, None);
        check("1Zi", None, None);
        for (milli, shown) in [
            (500, "500m"),
            (2000, "2"),
            (0, "0"),
            (134217728000, "128Mi"),
            (1000 * 1000, "1000"),
        ] {
            assert_eq!(format_milli(milli), shown);
        }
    }
}
