//! Borrowed JSON building blocks the adapters' wire structs are made of.
//!
//! simd-json unescapes strings in place, so every string it hands to serde borrows from the
//! request body: decoding copies no text. serde's own `Cow<str>` impl always allocates when
//! nested (in a map, an `Option`), hence [`Str`], which keeps the borrow wherever the
//! deserializer offers one and falls back to an owned copy (serde_json, escaped strings).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

thread_local! {
    /// simd-json's scratch space (padded input copy, structural index, string buffer), kept per
    /// thread: allocating it afresh for every body was the largest cost of a parse. It grows to
    /// the largest body the thread has parsed, bounded by the API's body limit (about three times
    /// 256 KiB per thread at worst).
    static SIMD_BUFFERS: RefCell<simd_json::Buffers> = RefCell::new(simd_json::Buffers::default());
}

/// Runs `f` with this thread's simd-json buffers. Nothing parses re-entrantly, but should the
/// buffers be in use, `f` gets fresh ones rather than a panic.
pub(crate) fn with_simd_buffers<T>(f: impl FnOnce(&mut simd_json::Buffers) -> T) -> T {
    SIMD_BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => f(&mut buffers),
        Err(_) => f(&mut simd_json::Buffers::default()),
    })
}

/// A JSON string, borrowed from the body when possible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Str<'a>(pub(crate) Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor(std::marker::PhantomData))
    }
}

impl Serialize for Str<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A JSON object of string values (labels, annotations), in wire order. A `Vec` rather than a
/// map: the adapters merge it into a `BTreeMap` anyway, and re-serialising it for
/// `originalPayload` then keeps the sender's order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StrMap<'a>(pub(crate) Vec<(Str<'a>, Str<'a>)>);

impl StrMap<'_> {
    /// Inserts every entry into `into`, overwriting what is there (later entries win, as in a
    /// JSON object with a duplicated key).
    pub(crate) fn merge_into(&self, into: &mut BTreeMap<String, String>) {
        for (k, v) in &self.0 {
            into.insert(k.0.clone().into_owned(), v.0.clone().into_owned());
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for StrMap<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for MapVisitor<'a> {
            type Value = StrMap<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // The size hint comes from the sender; cap it so a lying hint cannot make us
                // reserve more than the body could hold.
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<Str<'a>, Str<'a>>()? {
                    entries.push(entry);
                }
                Ok(StrMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

impl Serialize for StrMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The value of the first of `keys` that is present and not empty. Prometheus drops labels with
/// empty values, so an empty value is treated as absent.
pub(crate) fn first_non_empty<'m>(
    labels: &'m BTreeMap<String, String>,
    keys: &[&str],
) -> Option<&'m str> {
    keys.iter()
        .find_map(|k| labels.get(*k).map(String::as_str).filter(|v| !v.is_empty()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Holder<'a> {
        #[serde(borrow)]
        s: Option<Str<'a>>,
        #[serde(borrow)]
        m: Option<StrMap<'a>>,
    }

    #[test]
    fn simd_json_borrows_even_escaped_strings() {
        let mut body = br#"{"s":"a\"b","m":{"k":"v","k":"w"}}"#.to_vec();
        let h: Holder<'_> = simd_json::from_slice(&mut body).unwrap();
        let s = h.s.unwrap();
        assert!(matches!(s.0, Cow::Borrowed(_)));
        assert_eq!(&*s, "a\"b");
        let mut merged = BTreeMap::new();
        h.m.unwrap().merge_into(&mut merged);
        assert_eq!(merged["k"], "w");
    }

    #[test]
    fn serde_json_falls_back_to_owned_for_escapes() {
        let h: Holder<'_> = serde_json::from_str(r#"{"s":"a\"b","m":null}"#).unwrap();
        assert!(matches!(h.s.unwrap().0, Cow::Owned(_)));
        assert!(h.m.is_none());
    }

    #[test]
    fn non_string_values_are_errors() {
        let mut body = br#"{"m":{"k":1}}"#.to_vec();
        assert!(simd_json::from_slice::<Holder<'_>>(&mut body).is_err());
        let mut body = br#"{"s":["x"]}"#.to_vec();
        assert!(simd_json::from_slice::<Holder<'_>>(&mut body).is_err());
    }

    #[test]
    fn serialises_in_wire_order() {
        let mut body = br#"{"m":{"z":"1","a":"2"}}"#.to_vec();
        let h: Holder<'_> = simd_json::from_slice(&mut body).unwrap();
        assert_eq!(
            serde_json::to_string(&h.m.unwrap()).unwrap(),
            r#"{"z":"1","a":"2"}"#
        );
    }
}
