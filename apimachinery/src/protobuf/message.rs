//! Table-driven decoding of a message's fields into the JSON object Kubernetes would write.

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::ProtobufError;
use super::schema::MESSAGES;
use super::special;
use super::table::{Field, Label, Type};
use super::wire::{Reader, Wire};

/// How many levels of messages may nest (the object itself is one); Kubernetes objects stay
/// far below it.
pub const MAX_DEPTH: usize = 32;

/// Decodes the message `MESSAGES[index]` into a JSON object.
pub(super) fn decode_message(
    buf: &[u8],
    index: u16,
    depth: usize,
) -> Result<Map<String, Value>, ProtobufError> {
    let mut obj = Map::new();
    decode_into(&mut obj, buf, index, depth)?;
    Ok(obj)
}

/// Decodes the fields of `MESSAGES[index]` into `obj` (a new object, a message seen before,
/// or the enclosing object of an inline message).
fn decode_into(
    obj: &mut Map<String, Value>,
    buf: &[u8],
    index: u16,
    depth: usize,
) -> Result<(), ProtobufError> {
    let msg = &MESSAGES[usize::from(index)];
    if depth >= MAX_DEPTH {
        return Err(ProtobufError::TooDeep {
            message: msg.name.to_string(),
        });
    }
    let mut reader = Reader::new(buf);
    while !reader.is_empty() {
        let (tag, wire) = reader
            .field()
            .map_err(|e| ProtobufError::from_wire(msg.name, e))?;
        let Some(field) = msg.field(tag) else {
            return Err(ProtobufError::UnknownField {
                message: msg.name.to_string(),
                tag,
            });
        };
        match field.label {
            Label::Inline => {
                let Type::Msg(inner) = field.ty else {
                    unreachable!("generate.py only inlines messages")
                };
                let bytes = expect_len(msg.name, field, wire)?;
                decode_into(obj, bytes, inner, depth + 1)?;
            }
            Label::Omit | Label::Keep => single(obj, msg.name, field, wire, depth)?,
            Label::Repeated => repeated(obj, msg.name, field, wire, depth)?,
            Label::Map => map_entry(obj, msg.name, field, wire, depth)?,
        }
    }
    Ok(())
}

/// A singular field. A message seen twice is merged, as protobuf requires; for anything else
/// the last value wins. A zero scalar of an [`Label::Omit`] field is left out.
fn single(
    obj: &mut Map<String, Value>,
    message: &str,
    field: &Field,
    wire: Wire<'_>,
    depth: usize,
) -> Result<(), ProtobufError> {
    if let Type::Msg(inner) = field.ty {
        let bytes = expect_len(message, field, wire)?;
        let slot = obj
            .entry(field.json)
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        if let Value::Object(inner_obj) = slot {
            decode_into(inner_obj, bytes, inner, depth + 1)?;
        }
        return Ok(());
    }
    let value = value(message, field, wire, depth)?;
    if field.label == Label::Omit && is_scalar(field.ty) && is_zero(&value) {
        obj.remove(field.json);
    } else {
        obj.insert(field.json.to_string(), value);
    }
    Ok(())
}

/// One or more elements of a repeated field (scalars may come packed).
fn repeated(
    obj: &mut Map<String, Value>,
    message: &str,
    field: &Field,
    wire: Wire<'_>,
    depth: usize,
) -> Result<(), ProtobufError> {
    let mut elements = Vec::new();
    match (field.ty, wire) {
        (Type::Bool | Type::I32 | Type::I64, Wire::Len(packed)) => {
            let mut reader = Reader::new(packed);
            while !reader.is_empty() {
                let v = reader
                    .varint()
                    .map_err(|e| ProtobufError::from_wire(message, e))?;
                elements.push(value(message, field, Wire::Varint(v), depth)?);
            }
        }
        (Type::F64, Wire::Len(packed)) => {
            let mut reader = Reader::new(packed);
            while !reader.is_empty() {
                let v = reader
                    .fixed64()
                    .map_err(|e| ProtobufError::from_wire(message, e))?;
                elements.push(value(message, field, Wire::Fixed64(v), depth)?);
            }
        }
        _ => elements.push(value(message, field, wire, depth)?),
    }
    let slot = obj
        .entry(field.json)
        .or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    if let Value::Array(array) = slot {
        array.extend(elements);
    }
    Ok(())
}

/// One entry {key=1, value=2} of a `map<string, ty>` field; the last entry for a key wins.
fn map_entry(
    obj: &mut Map<String, Value>,
    message: &str,
    field: &Field,
    wire: Wire<'_>,
    depth: usize,
) -> Result<(), ProtobufError> {
    let entry_name = entry_message(message, field.json);
    let bytes = expect_len(message, field, wire)?;
    let mut reader = Reader::new(bytes);
    let mut key = String::new();
    let mut val = None;
    while !reader.is_empty() {
        let (tag, wire) = reader
            .field()
            .map_err(|e| ProtobufError::from_wire(&entry_name, e))?;
        match tag {
            1 => {
                let key_field = Field {
                    tag: 1,
                    json: "key",
                    label: Label::Keep,
                    ty: Type::Str,
                };
                key = utf8(
                    &entry_name,
                    "key",
                    expect_len(&entry_name, &key_field, wire)?,
                )?;
            }
            2 => {
                let value_field = Field {
                    tag: 2,
                    json: "value",
                    label: Label::Keep,
                    ty: field.ty,
                };
                val = Some(value(&entry_name, &value_field, wire, depth)?);
            }
            _ => {
                return Err(ProtobufError::UnknownField {
                    message: entry_name,
                    tag,
                });
            }
        }
    }
    let val = match val {
        Some(v) => v,
        None => zero(&entry_name, field, depth)?,
    };
    let slot = obj
        .entry(field.json)
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(map) = slot {
        map.insert(key, val);
    }
    Ok(())
}

/// The proto name of a map field's entry message: `ConfigMap.data` → `ConfigMap.DataEntry`.
fn entry_message(message: &str, json: &str) -> String {
    let mut chars = json.chars();
    let first: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .collect();
    format!("{message}.{first}{}Entry", chars.as_str())
}

/// The value of a map entry that carries no value: the type's zero.
fn zero(message: &str, field: &Field, depth: usize) -> Result<Value, ProtobufError> {
    let wire = match expected_wire(field.ty) {
        0 => Wire::Varint(0),
        1 => Wire::Fixed64(0),
        _ => Wire::Len(&[]),
    };
    value(message, field, wire, depth)
}

/// One value (a singular field, a repeated element, a map value) of the field's type.
fn value(
    message: &str,
    field: &Field,
    wire: Wire<'_>,
    depth: usize,
) -> Result<Value, ProtobufError> {
    if wire.wire_type() != expected_wire(field.ty) {
        return Err(ProtobufError::WireType {
            message: message.to_string(),
            field: field.json.to_string(),
            tag: u64::from(field.tag),
            wire: wire.wire_type(),
        });
    }
    let invalid = |problem: &str| ProtobufError::InvalidValue {
        message: message.to_string(),
        field: field.json.to_string(),
        problem: problem.to_string(),
    };
    Ok(match (field.ty, wire) {
        (Type::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Type::I32, Wire::Varint(v)) => Value::from(v as i32),
        (Type::I64, Wire::Varint(v)) => Value::from(v as i64),
        (Type::F64, Wire::Fixed64(v)) => Number::from_f64(f64::from_bits(v))
            .map(Value::Number)
            .ok_or_else(|| invalid("not a finite number"))?,
        (Type::Str, Wire::Len(b)) => Value::String(utf8(message, field.json, b)?),
        (Type::Bytes, Wire::Len(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Type::Msg(inner), Wire::Len(b)) => Value::Object(decode_message(b, inner, depth + 1)?),
        (Type::Time, Wire::Len(b)) => special::time(b, false)?,
        (Type::MicroTime, Wire::Len(b)) => special::time(b, true)?,
        (Type::Duration, Wire::Len(b)) => special::duration(b)?,
        (Type::Quantity, Wire::Len(b)) => special::quantity(b)?,
        (Type::IntOrString, Wire::Len(b)) => special::int_or_string(b)?,
        (Type::RawExtension, Wire::Len(b)) => special::raw(b, false, depth + 1)?,
        (Type::FieldsV1, Wire::Len(b)) => special::raw(b, true, depth + 1)?,
        _ => unreachable!("the wire type was checked against the field type"),
    })
}

fn utf8(message: &str, field: &str, bytes: &[u8]) -> Result<String, ProtobufError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_string()),
        Err(_) => Err(ProtobufError::InvalidValue {
            message: message.to_string(),
            field: field.to_string(),
            problem: "not valid UTF-8".to_string(),
        }),
    }
}

fn expect_len<'a>(message: &str, field: &Field, wire: Wire<'a>) -> Result<&'a [u8], ProtobufError> {
    match wire {
        Wire::Len(bytes) => Ok(bytes),
        other => Err(ProtobufError::WireType {
            message: message.to_string(),
            field: field.json.to_string(),
            tag: u64::from(field.tag),
            wire: other.wire_type(),
        }),
    }
}

/// The wire type a value of this type arrives in (unpacked).
fn expected_wire(ty: Type) -> u8 {
    match ty {
        Type::Bool | Type::I32 | Type::I64 => 0,
        Type::F64 => 1,
        _ => 2,
    }
}

fn is_scalar(ty: Type) -> bool {
    matches!(
        ty,
        Type::Str | Type::Bool | Type::I32 | Type::I64 | Type::F64 | Type::Bytes
    )
}

/// Whether a scalar's JSON value is Go's zero value ("", false, 0, no bytes).
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(ty: Type, wire: Wire<'_>, expected: Result<Value, &str>) {
        let field = Field {
            tag: 9,
            json: "f",
            label: Label::Keep,
            ty,
        };
        let got = value("T", &field, wire, 0).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_string), "{ty:?} {wire:?}");
    }

    #[test]
    fn each_type_decodes_from_its_wire_type() {
        check(Type::Str, Wire::Len(b"x"), Ok(json!("x")));
        check(Type::Bool, Wire::Varint(2), Ok(json!(true)));
        check(Type::I32, Wire::Varint(u64::MAX), Ok(json!(-1)));
        check(Type::I32, Wire::Varint(1 << 32 | 7), Ok(json!(7)));
        check(Type::I64, Wire::Varint(u64::MAX), Ok(json!(-1)));
        check(Type::F64, Wire::Fixed64(1.5f64.to_bits()), Ok(json!(1.5)));
        check(Type::Bytes, Wire::Len(b"hi"), Ok(json!("aGk=")));
        check(
            Type::Duration,
            Wire::Len(&[8, 0x80, 0x94, 0xeb, 0xdc, 0x03]),
            Ok(json!("1s")),
        );
        check(Type::Time, Wire::Len(&[]), Ok(json!(null)));
        check(Type::Quantity, Wire::Len(&[]), Ok(json!("0")));
        check(Type::IntOrString, Wire::Len(&[]), Ok(json!(0)));
    }

    #[test]
    fn values_go_cannot_marshal_are_errors() {
        check(
            Type::F64,
            Wire::Fixed64(f64::NAN.to_bits()),
            Err("protobuf field f of T: not a finite number"),
        );
        check(
            Type::Str,
            Wire::Len(&[0xc3, 0x28]),
            Err("protobuf field f of T: not valid UTF-8"),
        );
        check(
            Type::Str,
            Wire::Varint(1),
            Err("protobuf field 9 (f) of T has wire type 0, which does not match its type"),
        );
        check(
            Type::I64,
            Wire::Len(b""),
            Err("protobuf field 9 (f) of T has wire type 2, which does not match its type"),
        );
        check(
            Type::Time,
            Wire::Fixed32(0),
            Err("protobuf field 9 (f) of T has wire type 5, which does not match its type"),
        );
    }

    #[test]
    fn map_entries_are_named_like_protoc_names_them() {
        assert_eq!(
            entry_message("a.ConfigMap", "binaryData"),
            "a.ConfigMap.BinaryDataEntry"
        );
        assert_eq!(entry_message("a.B", ""), "a.B.Entry");
    }
}
