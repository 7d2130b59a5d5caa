//! Lazy JSON access for decoding: a record is split into its top-level
//! `(key, raw value)` pairs without building a tree, and only the values a
//! field map points at are parsed. Gateways log far more than we need (Kong's
//! full route and service objects), so this is where decode speed comes from.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON object as a flat list of keys and unparsed values.
pub struct LazyObject<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> LazyObject<'a> {
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_ref())
    }
}

struct BorrowedKey<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BorrowedKey(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for LazyObject<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LazyObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((k, v)) = map.next_entry::<BorrowedKey<'de>, &'de RawValue>()? {
                    entries.push((k.0, v));
                }
                Ok(LazyObject { entries })
            }
        }
        d.deserialize_map(V)
    }
}

/// Parse a record, keeping only the top-level values whose keys are in
/// `index` (key → slot); everything else is skipped without allocation.
pub fn parse_slots<'a>(
    text: &'a str,
    index: &rustc_hash::FxHashMap<Box<str>, u16>,
    slots: &mut [Option<&'a RawValue>],
) -> Result<(), serde_json::Error> {
    use serde::de::DeserializeSeed;
    struct Seed<'i, 's, 'a> {
        index: &'i rustc_hash::FxHashMap<Box<str>, u16>,
        slots: &'s mut [Option<&'a RawValue>],
    }
    impl<'de> DeserializeSeed<'de> for Seed<'_, '_, 'de> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Seed<'_, '_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(k) = map.next_key::<BorrowedKey<'de>>()? {
                match self
                    .index
                    .get(k.0.as_ref())
                    .and_then(|i| self.slots.get_mut(usize::from(*i)))
                {
                    Some(slot @ None) => {
                        *slot = Some(map.next_value::<&'de RawValue>()?);
                    }
                    _ => {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    Seed { index, slots }.deserialize(&mut de)?;
    de.end()
}

/// A leaf value, borrowed from the record where possible.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
    Null,
    /// An object or array where a scalar was expected.
    Composite(&'a str),
}

impl<'a> Scalar<'a> {
    pub fn from_raw(raw: &'a RawValue) -> Scalar<'a> {
        let s = raw.get();
        match s.as_bytes().first() {
            Some(b'"') => {
                let inner = s
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or_default();
                if inner.contains('\\') {
                    match serde_json::from_str::<String>(s) {
                        Ok(v) => Scalar::Str(Cow::Owned(v)),
                        Err(_) => Scalar::Null,
                    }
                } else {
                    Scalar::Str(Cow::Borrowed(inner))
                }
            }
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'n') => Scalar::Null,
            Some(b'{') | Some(b'[') => Scalar::Composite(s),
            Some(_) => s.parse::<f64>().map(Scalar::Num).unwrap_or(Scalar::Null),
            None => Scalar::Null,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Scalar::Str(_) => "string",
            Scalar::Num(_) => "number",
            Scalar::Bool(_) => "boolean",
            Scalar::Null => "null",
            Scalar::Composite(_) => "object/array",
        }
    }
}

/// Resolve a pre-split JSON Pointer against a record.
pub fn resolve<'a>(root: &LazyObject<'a>, pointer: &[PointerPart]) -> Option<&'a RawValue> {
    let (first, rest) = pointer.split_first()?;
    resolve_from(root.get(&first.key)?, rest)
}

/// Follow the rest of a pointer from an already resolved value.
pub fn resolve_from<'a>(mut cur: &'a RawValue, rest: &[PointerPart]) -> Option<&'a RawValue> {
    for part in rest {
        let text = cur.get();
        cur = match text.as_bytes().first() {
            Some(b'{') => LazyObject::parse(text).ok()?.get(&part.key)?,
            Some(b'[') => {
                let idx = part.index?;
                let arr: Vec<&RawValue> = serde_json::from_str(text).ok()?;
                *arr.get(idx)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// One step of a JSON Pointer (RFC 6901), unescaped, with its index form.
#[derive(Debug, Clone, PartialEq)]
pub struct PointerPart {
    pub key: String,
    pub index: Option<usize>,
}

pub fn split_pointer(p: &str) -> Vec<PointerPart> {
    p.split('/')
        .skip(1)
        .map(|k| {
            let key = k.replace("~1", "/").replace("~0", "~");
            let index = key.parse().ok();
            PointerPart { key, index }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests {
    use super::*;

    #[test]
    fn resolves_nested_pointers_and_escapes() {
        let text = r#"{"a":{"b/c":[1,{"d":"x\"y"}]},"e":"plain"}"#;
        let obj = LazyObject::parse(text).unwrap();
        let v = resolve(&obj, &split_pointer("/a/b~1c/1/d")).unwrap();
        assert_eq!(Scalar::from_raw(v), Scalar::Str(Cow::Owned("x\"y".into())));
        let v = resolve(&obj, &split_pointer("/e")).unwrap();
        assert_eq!(Scalar::from_raw(v), Scalar::Str(Cow::Borrowed("plain")));
        assert!(resolve(&obj, &split_pointer("/a/zz")).is_none());
    }
}
