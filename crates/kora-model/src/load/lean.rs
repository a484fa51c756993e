//! Reading a JSON workflow without ever holding the whole document as a `Value`, which takes
//! about twelve times its text (a 100,000-node file of 11 MB became 137 MB): the top level is
//! split into raw JSON slices of the text, and nodes and connections are parsed one at a time
//! as the loader takes them. Anything unusual (not an object, not JSON, a Kora document that
//! does not deserialize) is left to the general path, which reports it.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{Element, LoadError, Part, Shape, from_parts};
use crate::spec::WorkflowSpec;
use crate::value::Map;

/// `Some` when this path could read `text`.
pub(super) fn load(text: &str) -> Option<Result<(WorkflowSpec, Shape), Vec<LoadError>>> {
    let Entries(top) = serde_json::from_str::<Entries<'_>>(text).ok()?;
    if top.iter().any(|(k, _)| k == "kora") {
        return serde_json::from_str::<WorkflowSpec>(text)
            .ok()
            .map(|s| Ok((s, Shape::Kora)));
    }
    let mut rest = Map::new();
    let (mut nodes, mut connections) = (None, None);
    for (k, v) in &top {
        match k.as_str() {
            "nodes" => nodes = Some(Part::Raw(v)),
            "connections" => connections = Some(Part::Raw(v)),
            _ => {
                rest.insert(k.clone(), serde_json::from_str(v.get()).ok()?);
            }
        }
    }
    Some(from_parts(&rest, nodes, connections))
}

/// Calls `f` on each element of a raw list or object, parsed one at a time; false when it is
/// neither or cannot be read.
pub(super) fn for_each(raw: &RawValue, mut f: impl FnMut(Element<'_>, &Value)) -> bool {
    match first(raw) {
        Some(b'[') => {
            let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
                return false;
            };
            for (i, item) in items.into_iter().enumerate() {
                let Ok(v) = serde_json::from_str::<Value>(item.get()) else {
                    return false;
                };
                f(Element::Item(i), &v);
            }
            true
        }
        Some(b'{') => {
            let Ok(Entries(entries)) = serde_json::from_str(raw.get()) else {
                return false;
            };
            for (k, item) in &entries {
                let Ok(v) = serde_json::from_str::<Value>(item.get()) else {
                    return false;
                };
                f(Element::Entry(k), &v);
            }
            true
        }
        _ => false,
    }
}

/// Whether any element of a raw list or object is an object holding one of `keys`.
pub(super) fn any_has(raw: &RawValue, keys: &[&str]) -> bool {
    let has = |item: &RawValue| {
        serde_json::from_str::<Entries<'_>>(item.get())
            .is_ok_and(|Entries(e)| e.iter().any(|(k, _)| keys.contains(&k.as_str())))
    };
    match first(raw) {
        Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(raw.get())
            .is_ok_and(|items| items.into_iter().any(has)),
        Some(b'{') => serde_json::from_str::<Entries<'_>>(raw.get())
            .is_ok_and(|Entries(e)| e.into_iter().any(|(_, v)| has(v))),
        _ => false,
    }
}

pub(super) fn first(raw: &RawValue) -> Option<u8> {
    raw.get().trim_start().as_bytes().first().copied()
}

/// An object's entries as raw slices, in order; a repeated key keeps its first place and its
/// last value, as `serde_json::Map` does.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
        let mut out: Vec<(String, &'de RawValue)> = Vec::new();
        let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        while let Some(k) = map.next_key::<String>()? {
            let v: &'de RawValue = map.next_value()?;
            match at.get(&k) {
                Some(&i) => out[i].1 = v,
                None => {
                    at.insert(k.clone(), out.len());
                    out.push((k, v));
                }
            }
        }
        Ok(Entries(out))
    }
}
