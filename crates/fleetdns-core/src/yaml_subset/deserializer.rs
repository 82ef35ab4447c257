//! A [`NodeRef`] as a `serde::Deserializer` that reads what `&serde_json::Value`'s
//! deserializer reads from the same value: the typed objects come out of the document's nodes
//! without building the `Value` first.
//!
//! It mirrors serde_json (1.x, without `arbitrary_precision`): `deserialize_any` visits by the
//! resolved type (null → unit, bool, non-negative integer → u64, negative → i64, string →
//! borrowed str, sequence → seq, mapping → map); `Option` is `None` for null and `Some`
//! otherwise; a struct reads a mapping or a sequence; unknown fields are ignored; a map key
//! reads as a borrowed str. What a mirror would need care for and Kubernetes shapes never ask
//! (enums, numbers or bools as map keys) is refused: a refusal only makes the caller read
//! the document as before, through serde-saphyr and `serde_json::Value`.
//!
//! Its error says only that the fast path did not read a document: the caller then reads it
//! with serde-saphyr, whose errors are the ones reported.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Unexpected, Visitor};

use super::{Node, NodeRef};

/// Why the fast path did not read a document into a type: the document does not fit the type
/// (or asks for something the fast path does not mirror). Never shown to a user: the document
/// is then read by serde-saphyr, which words the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not read by the YAML fast path: {0}")]
pub struct NotRead(String);

impl de::Error for NotRead {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl<'de> NodeRef<'de> {
    fn unexpected(self) -> Unexpected<'de> {
        match self.node {
            Node::Null => Unexpected::Unit,
            Node::Bool(b) => Unexpected::Bool(*b),
            Node::PosInt(n) => Unexpected::Unsigned(*n),
            Node::NegInt(n) => Unexpected::Signed(*n),
            Node::Str(s) => Unexpected::Str(s),
            Node::Seq(_) => Unexpected::Seq,
            Node::Map(_) => Unexpected::Map,
        }
    }

    fn invalid_type(self, exp: &dyn de::Expected) -> NotRead {
        de::Error::invalid_type(self.unexpected(), exp)
    }

    fn visit_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        let Node::Seq(run) = self.node else {
            return Err(self.invalid_type(&visitor));
        };
        let mut items = Items {
            doc: self,
            iter: self.doc.items[run.range()].iter(),
        };
        let value = visitor.visit_seq(&mut items)?;
        let remaining = items.iter.len();
        if remaining == 0 {
            Ok(value)
        } else {
            Err(de::Error::invalid_length(
                run.len as usize,
                &"fewer elements in array",
            ))
        }
    }

    fn visit_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        let Node::Map(run) = self.node else {
            return Err(self.invalid_type(&visitor));
        };
        let mut entries = Entries {
            doc: self,
            iter: self.entries(*run).iter(),
            value: None,
        };
        let value = visitor.visit_map(&mut entries)?;
        let remaining = entries.iter.len();
        if remaining == 0 {
            Ok(value)
        } else {
            Err(de::Error::invalid_length(
                run.len as usize,
                &"fewer elements in map",
            ))
        }
    }

    fn visit_number<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        match self.node {
            Node::PosInt(n) => visitor.visit_u64(*n),
            Node::NegInt(n) => visitor.visit_i64(*n),
            _ => Err(self.invalid_type(&visitor)),
        }
    }
}

macro_rules! numbers {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
                self.visit_number(visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for NodeRef<'de> {
    type Error = NotRead;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        match self.node {
            Node::Null => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::PosInt(_) | Node::NegInt(_) => self.visit_number(visitor),
            Node::Str(s) => visitor.visit_borrowed_str(s),
            Node::Seq(_) => self.visit_seq(visitor),
            Node::Map(_) => self.visit_map(visitor),
        }
    }

    numbers! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        match self.node {
            Node::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, NotRead> {
        Err(de::Error::custom(format_args!(
            "enum {name}: not read by the fast path"
        )))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NotRead> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        match self.node {
            Node::Bool(b) => visitor.visit_bool(*b),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        match self.node {
            Node::Str(s) => visitor.visit_borrowed_str(s),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        match self.node {
            Node::Str(s) => visitor.visit_borrowed_str(s),
            Node::Seq(_) => self.visit_seq(visitor),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        match self.node {
            Node::Null => visitor.visit_unit(),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NotRead> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        self.visit_seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, NotRead> {
        self.visit_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, NotRead> {
        self.visit_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        self.visit_map(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NotRead> {
        match self.node {
            Node::Seq(_) => self.visit_seq(visitor),
            _ => self.visit_map(visitor),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        visitor.visit_unit()
    }
}

/// A sequence's items, one by one.
struct Items<'de> {
    doc: NodeRef<'de>,
    iter: std::slice::Iter<'de, Node<'de>>,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = NotRead;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NotRead> {
        match self.iter.next() {
            Some(node) => seed.deserialize(self.doc.at(node)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// A mapping's entries, one by one (in document order: the keys are unique, so a type reads
/// the same as from a `serde_json::Map`, which visits them in key order).
struct Entries<'de> {
    doc: NodeRef<'de>,
    iter: std::slice::Iter<'de, (std::borrow::Cow<'de, str>, Node<'de>)>,
    value: Option<&'de Node<'de>>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = NotRead;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NotRead> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(Key(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, NotRead> {
        match self.value.take() {
            Some(node) => seed.deserialize(self.doc.at(node)),
            None => Err(de::Error::custom("value is missing")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// A mapping's key: a string, read as serde_json reads an object's key, except as a number,
/// a bool or an enum (refused).
struct Key<'de>(&'de str);

impl<'de> de::Deserializer<'de> for Key<'de> {
    type Error = NotRead;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, NotRead> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NotRead> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NotRead> {
        let _ = (variants, visitor);
        Err(de::Error::custom(format_args!(
            "enum {name} as a key: not read by the fast path"
        )))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(de::Error::custom(
            "a bool as a key: not read by the fast path",
        ))
    }

    fn deserialize_i8<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_i16<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_i32<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_i64<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_i128<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_u8<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_u16<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_u32<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_u64<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_u128<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_f32<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }
    fn deserialize_f64<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, NotRead> {
        Err(not_a_number_key())
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct
        map struct identifier ignored_any
    }
}

fn not_a_number_key() -> NotRead {
    de::Error::custom("a number as a key: not read by the fast path")
}

/// Reads a type from a node, as `T::deserialize(&value)` reads it from the node's
/// `serde_json::Value`; an error when that fails (or asks for what the fast path does not
/// mirror).
pub fn from_node<'de, T: de::Deserialize<'de>>(node: NodeRef<'de>) -> Result<T, NotRead> {
    T::deserialize(node)
}
