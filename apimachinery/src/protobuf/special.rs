//! Kubernetes' hand-marshalled types: Time, MicroTime, Duration, Quantity, IntOrString,
//! RawExtension and FieldsV1, each decoded to the JSON its Go `MarshalJSON` writes.

use serde_json::Value;

use super::ProtobufError;
use super::wire::{Reader, Wire};

/// The proto names of the hand-marshalled types, for errors.
pub(super) const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
/// See [`TIME`].
pub(super) const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
/// See [`TIME`].
pub(super) const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
/// See [`TIME`].
pub(super) const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
/// See [`TIME`].
pub(super) const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
/// See [`TIME`].
pub(super) const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
/// See [`TIME`].
pub(super) const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";

/// The fields of a small hand-decoded message, each checked against `expected` (number, wire
/// type, name).
pub(super) fn fields<'a>(
    message: &'static str,
    buf: &'a [u8],
    expected: &[(u64, u8, &'static str)],
) -> Result<Vec<(&'static str, Wire<'a>)>, ProtobufError> {
    let mut reader = Reader::new(buf);
    let mut out = Vec::new();
    while !reader.is_empty() {
        let (tag, value) = reader
            .field()
            .map_err(|e| ProtobufError::from_wire(message, e))?;
        let Some(&(_, wire, name)) = expected.iter().find(|(t, _, _)| *t == tag) else {
            return Err(ProtobufError::UnknownField {
                message: message.to_string(),
                tag,
            });
        };
        if value.wire_type() != wire {
            return Err(ProtobufError::WireType {
                message: message.to_string(),
                field: name.to_string(),
                tag,
                wire: value.wire_type(),
            });
        }
        out.push((name, value));
    }
    Ok(out)
}

fn invalid(message: &'static str, field: &'static str, problem: String) -> ProtobufError {
    ProtobufError::InvalidValue {
        message: message.to_string(),
        field: field.to_string(),
        problem,
    }
}

/// The bytes of a string field as UTF-8.
pub(super) fn string<'a>(
    message: &'static str,
    field: &'static str,
    bytes: &'a [u8],
) -> Result<&'a str, ProtobufError> {
    std::str::from_utf8(bytes).map_err(|_| invalid(message, field, "not valid UTF-8".into()))
}

/// `meta.v1.Time` and `MicroTime` {seconds=1, nanos=2}: null when empty (Go's zero time),
/// else RFC 3339 in UTC with seconds (Time) or microseconds (MicroTime), truncated.
pub(super) fn time(buf: &[u8], micro: bool) -> Result<Value, ProtobufError> {
    let message = if micro { MICRO_TIME } else { TIME };
    if buf.is_empty() {
        return Ok(Value::Null);
    }
    let (mut seconds, mut nanos) = (0i64, 0i64);
    for (name, value) in fields(message, buf, &[(1, 0, "seconds"), (2, 0, "nanos")])? {
        if let Wire::Varint(v) = value {
            match name {
                "seconds" => seconds = v as i64,
                _ => nanos = i64::from(v as i32),
            }
        }
    }
    // Go's time.Unix normalises nanoseconds outside [0, 1e9) into the seconds.
    let total = i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
    let secs = total.div_euclid(1_000_000_000);
    let frac = total.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return Err(invalid(
            message,
            "seconds",
            format!("{seconds} is outside years 0 to 9999"),
        ));
    }
    let (h, m, s) = (day_secs / 3600, day_secs / 60 % 60, day_secs % 60);
    let mut out = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}");
    if micro {
        out.push_str(&format!(".{:06}", frac / 1000));
    }
    out.push('Z');
    Ok(Value::String(out))
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

/// `meta.v1.Duration` {duration=1, nanoseconds}: Go's `time.Duration.String()`.
pub(super) fn duration(buf: &[u8]) -> Result<Value, ProtobufError> {
    let mut nanos = 0i64;
    for (_, value) in fields(DURATION, buf, &[(1, 0, "duration")])? {
        if let Wire::Varint(v) = value {
            nanos = v as i64;
        }
    }
    Ok(Value::String(go_duration(nanos)))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `2µs`, `0s`.
fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (digits, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        return format!("{sign}{}{unit}", decimal(u, digits));
    }
    let secs = u / 1_000_000_000;
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&decimal(u % 60_000_000_000, 9));
    out.push('s');
    out
}

/// `value / 10^digits` with its fraction, trailing zeros (and a bare point) omitted.
fn decimal(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (int, frac) = (value / scale, value % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// `resource.Quantity` {string=1}: the string; `"0"` when empty (Go's zero Quantity).
pub(super) fn quantity(buf: &[u8]) -> Result<Value, ProtobufError> {
    let mut out = "0".to_string();
    for (name, value) in fields(QUANTITY, buf, &[(1, 2, "string")])? {
        if let Wire::Len(bytes) = value {
            let s = string(QUANTITY, name, bytes)?;
            if s.is_empty() {
                return Err(invalid(
                    QUANTITY,
                    name,
                    "an empty string is not a quantity".into(),
                ));
            }
            out = s.to_string();
        }
    }
    Ok(Value::String(out))
}

/// `util.intstr.IntOrString` {type=1 (0 int, 1 string), intVal=2, strVal=3}.
pub(super) fn int_or_string(buf: &[u8]) -> Result<Value, ProtobufError> {
    let (mut ty, mut int, mut text) = (0i64, 0i32, "");
    let expected = [(1, 0, "type"), (2, 0, "intVal"), (3, 2, "strVal")];
    for (name, value) in fields(INT_OR_STRING, buf, &expected)? {
        match (name, value) {
            ("type", Wire::Varint(v)) => ty = v as i64,
            ("intVal", Wire::Varint(v)) => int = v as i32,
            (_, Wire::Len(bytes)) => text = string(INT_OR_STRING, name, bytes)?,
            _ => {}
        }
    }
    match ty {
        0 => Ok(Value::from(int)),
        1 => Ok(Value::String(text.to_string())),
        other => Err(invalid(
            INT_OR_STRING,
            "type",
            format!("{other} is neither 0 (int) nor 1 (string)"),
        )),
    }
}

/// `runtime.RawExtension` and `meta.v1.FieldsV1` {raw=1}: the embedded JSON, or null when
/// absent. A RawExtension may also hold a protobuf-encoded object (`k8s\0`), decoded in turn.
pub(super) fn raw(buf: &[u8], fields_v1: bool, depth: usize) -> Result<Value, ProtobufError> {
    let (message, name) = if fields_v1 {
        (FIELDS_V1, "Raw")
    } else {
        (RAW_EXTENSION, "raw")
    };
    let mut out = Value::Null;
    for (_, value) in fields(message, buf, &[(1, 2, name)])? {
        let Wire::Len(bytes) = value else { continue };
        out = if bytes.is_empty() {
            Value::Null
        } else if !fields_v1 && bytes.starts_with(super::MAGIC) {
            super::decode_nested(bytes, depth)?
        } else {
            serde_json::from_slice(bytes).map_err(|source| ProtobufError::EmbeddedJson {
                message,
                field: name,
                source,
            })?
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn varint(tag: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for mut x in [tag << 3, v] {
            loop {
                let byte = (x & 0x7f) as u8;
                x >>= 7;
                if x == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
        }
        out
    }

    fn bytes(tag: u64, b: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3 | 2) as u8, b.len() as u8];
        out.extend_from_slice(b);
        out
    }

    fn check(got: Result<Value, ProtobufError>, expected: Result<Value, &str>) {
        assert_eq!(
            got.map_err(|e| e.to_string()),
            expected.map_err(str::to_string)
        );
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        let t = |s: i64, n: i64| [varint(1, s as u64), varint(2, n as u64)].concat();
        check(time(&[], false), Ok(json!(null)));
        check(time(&[], true), Ok(json!(null)));
        check(time(&t(0, 0), false), Ok(json!("1970-01-01T00:00:00Z")));
        check(
            time(&t(1_700_000_000, 999_999_999), false),
            Ok(json!("2023-11-14T22:13:20Z")),
        );
        check(
            time(&t(1_700_000_000, 123_456_789), true),
            Ok(json!("2023-11-14T22:13:20.123456Z")),
        );
        check(
            time(&varint(1, 951_782_400), false),
            Ok(json!("2000-02-29T00:00:00Z")),
        );
        check(time(&t(-1, 0), false), Ok(json!("1969-12-31T23:59:59Z")));
        check(
            time(&t(0, -1), true),
            Ok(json!("1969-12-31T23:59:59.999999Z")),
        );
        check(
            time(&varint(1, 253_402_300_799), false),
            Ok(json!("9999-12-31T23:59:59Z")),
        );
        check(
            time(&varint(1, (-62_167_219_200i64) as u64), false),
            Ok(json!("0000-01-01T00:00:00Z")),
        );
        check(
            time(&varint(1, 253_402_300_800), false),
            Err(
                "protobuf field seconds of k8s.io.apimachinery.pkg.apis.meta.v1.Time: 253402300800 is outside years 0 to 9999",
            ),
        );
        check(
            time(&varint(1, i64::MIN as u64), true),
            Err(
                "protobuf field seconds of k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime: -9223372036854775808 is outside years 0 to 9999",
            ),
        );
        check(
            time(&varint(3, 1), false),
            Err(
                "protobuf field 3 of k8s.io.apimachinery.pkg.apis.meta.v1.Time is not known to this server; send the object as JSON",
            ),
        );
        check(
            time(&bytes(1, b"x"), false),
            Err(
                "protobuf field 1 (seconds) of k8s.io.apimachinery.pkg.apis.meta.v1.Time has wire type 2, which does not match its type",
            ),
        );
    }

    #[test]
    fn durations_are_go_duration_strings() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_500, "1.5µs"),
            (1_500_000, "1.5ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-1_500_000_000, "-1.5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for &(nanos, expected) in cases {
            check(duration(&varint(1, nanos as u64)), Ok(json!(expected)));
        }
        check(duration(&[]), Ok(json!("0s")));
    }

    #[test]
    fn quantities_are_their_strings() {
        check(quantity(&bytes(1, b"100m")), Ok(json!("100m")));
        check(quantity(&[]), Ok(json!("0")));
        check(
            quantity(&bytes(1, b"")),
            Err(
                "protobuf field string of k8s.io.apimachinery.pkg.api.resource.Quantity: an empty string is not a quantity",
            ),
        );
        check(
            quantity(&bytes(1, &[0xff])),
            Err(
                "protobuf field string of k8s.io.apimachinery.pkg.api.resource.Quantity: not valid UTF-8",
            ),
        );
    }

    #[test]
    fn int_or_strings_are_numbers_or_strings() {
        check(
            int_or_string(&[varint(1, 0), varint(2, 8080), bytes(3, b"")].concat()),
            Ok(json!(8080)),
        );
        check(
            int_or_string(&[varint(1, 1), varint(2, 0), bytes(3, b"http")].concat()),
            Ok(json!("http")),
        );
        check(int_or_string(&[]), Ok(json!(0)));
        check(int_or_string(&varint(2, (-5i64) as u64)), Ok(json!(-5)));
        check(
            int_or_string(&varint(1, 2)),
            Err(
                "protobuf field type of k8s.io.apimachinery.pkg.util.intstr.IntOrString: 2 is neither 0 (int) nor 1 (string)",
            ),
        );
    }

    #[test]
    fn raw_extensions_and_fields_v1_are_the_embedded_json() {
        check(
            raw(&bytes(1, br#"{"a":[1]}"#), false, 0),
            Ok(json!({"a": [1]})),
        );
        check(
            raw(&bytes(1, br#"{"f:metadata":{}}"#), true, 0),
            Ok(json!({"f:metadata": {}})),
        );
        check(raw(&[], false, 0), Ok(json!(null)));
        check(raw(&bytes(1, b""), true, 0), Ok(json!(null)));
        check(
            raw(&bytes(1, b"{"), false, 0),
            Err(
                "protobuf field raw of k8s.io.apimachinery.pkg.runtime.RawExtension does not hold JSON",
            ),
        );
    }
}
