//! The shape of the generated field tables in `schema.rs`: messages, fields, labels and types.

/// One protobuf message: its full proto name (for errors) and its fields, sorted by number.
pub(super) struct Message {
    /// The full proto name, e.g. `k8s.io.api.core.v1.Container`.
    pub(super) name: &'static str,
    /// The fields, sorted by field number.
    pub(super) fields: &'static [Field],
}

impl Message {
    /// The field with this number, if the message has one.
    pub(super) fn field(&self, tag: u64) -> Option<&'static Field> {
        let fields: &'static [Field] = self.fields;
        fields
            .binary_search_by(|f| u64::from(f.tag).cmp(&tag))
            .ok()
            .map(|i| &fields[i])
    }
}

/// One field of a message.
pub(super) struct Field {
    /// The field number.
    pub(super) tag: u32,
    /// The JSON name; empty for [`Label::Inline`].
    pub(super) json: &'static str,
    /// How the field maps to JSON.
    pub(super) label: Label,
    /// The type of the field (of its elements, of its map values).
    pub(super) ty: Type,
}

/// How a field maps to JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Label {
    /// Singular; a zero scalar ("", 0, false, no bytes) is dropped, as Go's encoding/json drops
    /// the zero value of a non-pointer field tagged `omitempty`.
    Omit,
    /// Singular; a zero scalar is kept (a Go pointer, so zero was set on purpose, or a field
    /// without `omitempty`).
    Keep,
    /// Repeated: a JSON array.
    Repeated,
    /// `map<string, ty>`: a JSON object.
    Map,
    /// A message Go embeds with `json:",inline"`: its fields go into the enclosing object.
    Inline,
}

/// The type of a field's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Type {
    /// `string`: a JSON string.
    Str,
    /// `bool`.
    Bool,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `double`.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "no message in the tables has a double field yet")
    )]
    F64,
    /// `bytes`: a base64 JSON string.
    Bytes,
    /// A message of the table: `MESSAGES[i]`, a JSON object.
    Msg(u16),
    /// `meta.v1.Time`: RFC 3339 with seconds, or null when zero.
    Time,
    /// `meta.v1.MicroTime`: RFC 3339 with microseconds, or null when zero.
    MicroTime,
    /// `meta.v1.Duration`: a Go duration string.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "no message in the tables has a Duration field yet"
        )
    )]
    Duration,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `util.intstr.IntOrString`: a JSON number or string.
    IntOrString,
    /// `runtime.RawExtension`: the embedded JSON.
    RawExtension,
    /// `meta.v1.FieldsV1`: the embedded JSON.
    FieldsV1,
}

/// A singular field whose zero scalar value is dropped.
pub(super) const fn omit(tag: u32, json: &'static str, ty: Type) -> Field {
    Field {
        tag,
        json,
        label: Label::Omit,
        ty,
    }
}

/// A singular field whose zero scalar value is kept.
pub(super) const fn keep(tag: u32, json: &'static str, ty: Type) -> Field {
    Field {
        tag,
        json,
        label: Label::Keep,
        ty,
    }
}

/// A repeated field.
pub(super) const fn rep(tag: u32, json: &'static str, ty: Type) -> Field {
    Field {
        tag,
        json,
        label: Label::Repeated,
        ty,
    }
}

/// A `map<string, ty>` field.
pub(super) const fn map(tag: u32, json: &'static str, ty: Type) -> Field {
    Field {
        tag,
        json,
        label: Label::Map,
        ty,
    }
}

/// A message embedded inline.
pub(super) const fn inline(tag: u32, ty: Type) -> Field {
    Field {
        tag,
        json: "",
        label: Label::Inline,
        ty,
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::{KINDS, MESSAGES};
    use super::*;

    #[test]
    fn every_message_has_sorted_unique_field_numbers_and_valid_references() {
        for m in MESSAGES {
            for pair in m.fields.windows(2) {
                assert!(pair[0].tag < pair[1].tag, "{} is not sorted", m.name);
            }
            for f in m.fields {
                assert_eq!(f.json.is_empty(), f.label == Label::Inline, "{}", m.name);
                if let Type::Msg(i) = f.ty {
                    assert!(usize::from(i) < MESSAGES.len(), "{}.{}", m.name, f.json);
                }
                if f.label == Label::Inline {
                    assert!(matches!(f.ty, Type::Msg(_)), "{}", m.name);
                }
            }
        }
        for (_, kind, i) in KINDS {
            assert!(usize::from(*i) < MESSAGES.len(), "{kind}");
        }
    }

    #[test]
    fn fields_are_found_by_number() {
        static M: Message = Message {
            name: "t",
            fields: &[
                omit(1, "a", Type::Str),
                keep(3, "b", Type::I32),
                rep(7, "c", Type::Str),
            ],
        };
        let m = &M;
        let check = |tag: u64, expected: Option<&str>| {
            assert_eq!(m.field(tag).map(|f| f.json), expected, "tag {tag}");
        };
        check(1, Some("a"));
        check(3, Some("b"));
        check(7, Some("c"));
        check(2, None);
        check(8, None);
        check(u64::MAX, None);
    }
}
