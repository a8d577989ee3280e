//! Rust values to [`Term`]s and back, with serde.
//!
//! The mapping follows what Erlang and Elixir code expects to match on:
//!
//! | Rust (serde data model) | term |
//! |---|---|
//! | `bool` | `true` / `false` |
//! | integers | integer (a bignum beyond `i64`) |
//! | `f32`, `f64` | float |
//! | `char`, `&str`, `String` | UTF-8 binary (an Elixir string) |
//! | bytes (`serde_bytes`) | binary |
//! | `None` / `Some(x)` | `undefined` / `x` |
//! | `()`, unit struct | `{}` (Rust's `()` is the empty tuple) |
//! | newtype struct `S(x)` | `x` |
//! | sequence (`Vec`, ...) | list |
//! | tuple, tuple struct | tuple |
//! | map | map |
//! | struct | map with atom keys: `#{name => .., age => ..}` |
//! | unit variant `E::A` | atom `'A'` |
//! | newtype variant `E::A(x)` | `{'A', x}` |
//! | tuple variant `E::A(x, y)` | `{'A', x, y}` |
//! | struct variant `E::A { x }` | `{'A', #{x => ..}}` |
//!
//! Names are used as written: use `#[serde(rename_all = "snake_case")]`
//! for Erlang-style atoms (`ok`, `not_found`).
//!
//! Decoding is a little more lenient: a string may also come as an atom or
//! a charlist, `nil` (Elixir) is `None` as well as `undefined`, a struct may
//! have binary keys, a sequence may be a tuple, and a float may be an
//! integer. It never creates atoms (a peer cannot fill the atom table
//! through it), and nests at most [`MAX_DEPTH`] levels.

use std::fmt;

use ::serde::Deserialize;
use ::serde::de::{
    self, DeserializeSeed, Deserializer as _, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use ::serde::ser::{self, Serialize};

use super::{Atom, Term};

/// How deeply [`from_term`] follows nested terms: serde deserialisation
/// recurses, so a deeply nested term must not overflow the stack.
pub const MAX_DEPTH: usize = 128;

/// Why a value could not be converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SerdeError(String);

impl fmt::Display for SerdeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SerdeError {}

impl ser::Error for SerdeError {
    fn custom<T: fmt::Display>(msg: T) -> SerdeError {
        SerdeError(msg.to_string())
    }
}

impl de::Error for SerdeError {
    fn custom<T: fmt::Display>(msg: T) -> SerdeError {
        SerdeError(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, SerdeError>;

/// Converts a Rust value to a term (see the [module docs](self) for the
/// mapping). Fails only if a name cannot become an atom (the atom table is
/// full or the name is over 255 characters) or the value's `Serialize`
/// fails.
///
/// ```
/// use beamish::dist::{to_term, from_term};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// #[serde(rename_all = "snake_case")]
/// enum Reply { Ok(u32), NotFound }
/// let t = to_term(&Reply::Ok(7)).unwrap();
/// assert_eq!(t.to_string(), "{ok,7}");
/// assert_eq!(to_term(&Reply::NotFound).unwrap().to_string(), "not_found");
/// assert_eq!(from_term::<Reply>(&t).unwrap(), Reply::Ok(7));
/// ```
pub fn to_term<T: Serialize + ?Sized>(value: &T) -> Result<Term> {
    value.serialize(TermSerializer)
}

/// Converts a term to a Rust value (see the [module docs](self)). Strings
/// and bytes may borrow from `term`.
pub fn from_term<'de, T: Deserialize<'de>>(term: &'de Term) -> Result<T> {
    T::deserialize(TermDeserializer {
        term,
        depth: MAX_DEPTH,
    })
}

fn atom(name: &str) -> Result<Term> {
    Atom::new(name)
        .map(Term::Atom)
        .map_err(|e| SerdeError(format!("`{name}` cannot be an atom: {e}")))
}

// ------------------------------------------------------------ serializer

struct TermSerializer;

/// A list, tuple or tuple variant being built.
struct SeqBuilder {
    items: Vec<Term>,
    tuple: bool,
}

/// A map, struct or struct variant being built.
struct MapBuilder {
    pairs: Vec<(Term, Term)>,
    key: Option<Term>,
    variant: Option<Term>,
}

impl ser::Serializer for TermSerializer {
    type Ok = Term;
    type Error = SerdeError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_char(self, v: char) -> Result<Term> {
        Ok(Term::from(v.encode_utf8(&mut [0; 4]) as &str))
    }
    fn serialize_str(self, v: &str) -> Result<Term> {
        Ok(Term::from(v))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Term> {
        Ok(Term::binary(v))
    }
    fn serialize_none(self) -> Result<Term> {
        Ok(Term::Atom(Atom::UNDEFINED))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Term> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Term> {
        Ok(Term::Tuple(Vec::new()))
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Term> {
        Ok(Term::Tuple(Vec::new()))
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Term> {
        atom(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Term> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Term> {
        Ok(Term::Tuple(vec![atom(variant)?, value.serialize(self)?]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len.unwrap_or(0)),
            tuple: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len),
            tuple: true,
        })
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqBuilder> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder> {
        let mut items = Vec::with_capacity(len + 1);
        items.push(atom(variant)?);
        Ok(SeqBuilder { items, tuple: true })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder> {
        Ok(MapBuilder {
            pairs: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
            variant: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapBuilder> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder> {
        Ok(MapBuilder {
            pairs: Vec::with_capacity(len),
            key: None,
            variant: Some(atom(variant)?),
        })
    }
}

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.items.push(value.serialize(TermSerializer)?);
        Ok(())
    }
    fn finish(self) -> Term {
        if self.tuple {
            Term::Tuple(self.items)
        } else {
            Term::list(self.items)
        }
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Term;
    type Error = SerdeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.push(value)
    }
    fn end(self) -> Result<Term> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Term;
    type Error = SerdeError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.push(value)
    }
    fn end(self) -> Result<Term> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Term;
    type Error = SerdeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.push(value)
    }
    fn end(self) -> Result<Term> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleVariant for SeqBuilder {
    type Ok = Term;
    type Error = SerdeError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.push(value)
    }
    fn end(self) -> Result<Term> {
        Ok(self.finish())
    }
}

impl MapBuilder {
    fn finish(self) -> Term {
        let map = Term::Map(self.pairs);
        match self.variant {
            Some(tag) => Term::Tuple(vec![tag, map]),
            None => map,
        }
    }
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<()> {
        self.pairs
            .push((atom(key)?, value.serialize(TermSerializer)?));
        Ok(())
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Term;
    type Error = SerdeError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key = Some(key.serialize(TermSerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let key = self
            .key
            .take()
            .ok_or_else(|| SerdeError("map value without a key".into()))?;
        self.pairs.push((key, value.serialize(TermSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Term> {
        Ok(self.finish())
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Term;
    type Error = SerdeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    fn end(self) -> Result<Term> {
        Ok(self.finish())
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Term;
    type Error = SerdeError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }
    fn end(self) -> Result<Term> {
        Ok(self.finish())
    }
}

// ---------------------------------------------------------- deserializer

#[derive(Clone, Copy)]
struct TermDeserializer<'de> {
    term: &'de Term,
    /// Levels of nesting still allowed.
    depth: usize,
}

impl<'de> TermDeserializer<'de> {
    fn enter(&self) -> Result<usize> {
        match self.depth {
            0 => Err(SerdeError(format!("term nested deeper than {MAX_DEPTH}"))),
            d => Ok(d - 1),
        }
    }

    fn unexpected(&self, exp: &dyn de::Expected) -> SerdeError {
        let what = match self.term {
            Term::Atom(_) => "an atom",
            Term::Int(_) | Term::Big(_) => "an integer",
            Term::Float(_) => "a float",
            Term::Binary(_) => "a binary",
            Term::BitBinary { .. } => "a bitstring",
            Term::ByteList(_) | Term::List(_) | Term::Nil => "a list",
            Term::Improper(..) => "an improper list",
            Term::Tuple(_) => "a tuple",
            Term::Map(_) => "a map",
            Term::Pid(_) => "a pid",
            Term::Ref(_) => "a reference",
            Term::Port(_) => "a port",
            Term::Fun(_) => "a fun",
        };
        let shown = self.term.to_string();
        let shown = match shown.char_indices().nth(60) {
            Some((i, _)) => format!("{}...", &shown[..i]),
            None => shown,
        };
        SerdeError(format!("expected {exp}, found {what}: {shown}"))
    }

    /// A sequence over a list, byte list or tuple.
    fn seq(&self) -> Option<Seq<'de>> {
        let depth = self.depth.saturating_sub(1);
        match self.term {
            Term::List(v) | Term::Tuple(v) => Some(Seq::Terms(v.iter(), depth)),
            Term::Nil => Some(Seq::Terms([].iter(), depth)),
            Term::ByteList(b) => Some(Seq::Bytes(b.iter())),
            _ => None,
        }
    }

    fn visit_seq<V: Visitor<'de>>(&self, visitor: V) -> Result<V::Value> {
        self.enter()?;
        let mut seq = self.seq().ok_or_else(|| self.unexpected(&visitor))?;
        let value = visitor.visit_seq(&mut seq)?;
        if seq.len() == 0 {
            Ok(value)
        } else {
            Err(de::Error::invalid_length(seq.len(), &"fewer elements"))
        }
    }

    fn int<V: Visitor<'de>>(&self, visitor: V) -> Result<V::Value> {
        match self.term {
            Term::Int(i) => visitor.visit_i64(*i),
            // Visitors of u64 take no i128: offer the narrowest type.
            Term::Big(b) => match (b.to_u128(), b.to_i128()) {
                (Some(u), _) if u <= u128::from(u64::MAX) => visitor.visit_u64(u as u64),
                (_, Some(i)) => visitor.visit_i128(i),
                (Some(u), None) => visitor.visit_u128(u),
                _ => Err(SerdeError(format!("integer {b} is too large"))),
            },
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn text(&self) -> Option<Text<'de>> {
        match self.term {
            Term::Binary(b) => std::str::from_utf8(b).ok().map(Text::Borrowed),
            Term::Atom(a) => Some(Text::Borrowed(a.as_str())),
            Term::ByteList(_) | Term::List(_) | Term::Nil => {
                // A charlist: a list of code points.
                let points = match self.term {
                    Term::ByteList(b) => b.iter().map(|&c| Some(char::from(c))).collect(),
                    Term::List(v) => v
                        .iter()
                        .map(|t| {
                            t.as_int()
                                .and_then(|i| u32::try_from(i).ok())
                                .and_then(char::from_u32)
                        })
                        .collect(),
                    _ => Some(String::new()),
                };
                points.map(Text::Owned)
            }
            _ => None,
        }
    }
}

enum Text<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl<'de> de::Deserializer<'de> for TermDeserializer<'de> {
    type Error = SerdeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.term {
            Term::Atom(Atom::TRUE) => visitor.visit_bool(true),
            Term::Atom(Atom::FALSE) => visitor.visit_bool(false),
            Term::Atom(a) => visitor.visit_borrowed_str(a.as_str()),
            Term::Int(_) | Term::Big(_) => self.int(visitor),
            Term::Float(f) => visitor.visit_f64(*f),
            Term::Binary(b) => match std::str::from_utf8(b) {
                Ok(s) => visitor.visit_borrowed_str(s),
                Err(_) => visitor.visit_borrowed_bytes(b),
            },
            Term::List(_) | Term::Nil | Term::ByteList(_) | Term::Tuple(_) => {
                self.visit_seq(visitor)
            }
            Term::Map(_) => self.deserialize_map(visitor),
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.term.as_bool() {
            Some(b) => visitor.visit_bool(b),
            None => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }
    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.int(visitor)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.term {
            Term::Float(f) => visitor.visit_f64(*f),
            Term::Int(i) => visitor.visit_f64(*i as f64),
            Term::Big(b) => visitor.visit_f64(b.to_f64()),
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if let Some(c) = self
            .term
            .as_int()
            .and_then(|i| u32::try_from(i).ok())
            .and_then(char::from_u32)
        {
            return visitor.visit_char(c);
        }
        if let Some(s) = self.term.as_str() {
            let mut chars = s.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                return visitor.visit_char(c);
            }
        }
        Err(self.unexpected(&visitor))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.text() {
            Some(Text::Borrowed(s)) => visitor.visit_borrowed_str(s),
            Some(Text::Owned(s)) => visitor.visit_string(s),
            None => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.term {
            Term::Binary(b) | Term::ByteList(b) => visitor.visit_borrowed_bytes(b),
            other => match other.as_byte_list() {
                Some(v) => visitor.visit_byte_buf(v),
                None => Err(self.unexpected(&visitor)),
            },
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.term {
            Term::Atom(Atom::UNDEFINED) | Term::Atom(Atom::NIL) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.term {
            Term::Tuple(v) if v.is_empty() => visitor.visit_unit(),
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.visit_seq(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.visit_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.visit_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let depth = self.enter()?;
        match self.term {
            Term::Map(m) => {
                let mut access = Pairs {
                    pairs: m.iter(),
                    value: None,
                    depth,
                };
                visitor.visit_map(&mut access)
            }
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let depth = self.enter()?;
        match self.term {
            Term::Atom(_) | Term::Binary(_) => visitor.visit_enum(Variant {
                tag: self.term,
                rest: &[],
                depth,
            }),
            Term::Tuple(v) => match v.split_first() {
                Some((tag, rest)) => visitor.visit_enum(Variant { tag, rest, depth }),
                None => Err(self.unexpected(&visitor)),
            },
            _ => Err(self.unexpected(&visitor)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.term {
            Term::Int(i) if *i >= 0 => visitor.visit_u64(*i as u64),
            _ => self.deserialize_str(visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

/// The elements of a list, tuple or byte list.
enum Seq<'de> {
    Terms(std::slice::Iter<'de, Term>, usize),
    Bytes(std::slice::Iter<'de, u8>),
}

impl Seq<'_> {
    fn len(&self) -> usize {
        match self {
            Seq::Terms(it, _) => it.len(),
            Seq::Bytes(it) => it.len(),
        }
    }
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = SerdeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self {
            Seq::Terms(it, depth) => match it.next() {
                Some(term) => seed
                    .deserialize(TermDeserializer {
                        term,
                        depth: *depth,
                    })
                    .map(Some),
                None => Ok(None),
            },
            Seq::Bytes(it) => match it.next() {
                Some(&b) => seed.deserialize(b.into_deserializer()).map(Some),
                None => Ok(None),
            },
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len())
    }
}

/// The pairs of a map.
struct Pairs<'de> {
    pairs: std::slice::Iter<'de, (Term, Term)>,
    value: Option<&'de Term>,
    depth: usize,
}

impl<'de> MapAccess<'de> for Pairs<'de> {
    type Error = SerdeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.pairs.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(TermDeserializer {
                    term: k,
                    depth: self.depth,
                })
                .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let term = self
            .value
            .take()
            .ok_or_else(|| SerdeError("map value asked before its key".into()))?;
        seed.deserialize(TermDeserializer {
            term,
            depth: self.depth,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

/// An enum: its tag (atom), and the elements after the tag in its tuple.
struct Variant<'de> {
    tag: &'de Term,
    rest: &'de [Term],
    depth: usize,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = SerdeError;
    type Variant = Variant<'de>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Variant<'de>)> {
        let tag = seed.deserialize(TermDeserializer {
            term: self.tag,
            depth: self.depth,
        })?;
        Ok((tag, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'de> {
    type Error = SerdeError;

    fn unit_variant(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(SerdeError(format!("variant {} has no fields", self.tag)))
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        match self.rest {
            [value] => seed.deserialize(TermDeserializer {
                term: value,
                depth: self.depth,
            }),
            _ => Err(SerdeError(format!(
                "variant {} needs {{Tag, Value}}",
                self.tag
            ))),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        let mut seq = Seq::Terms(self.rest.iter(), self.depth);
        let value = visitor.visit_seq(&mut seq)?;
        match seq.len() {
            0 => Ok(value),
            n => Err(de::Error::invalid_length(n, &"fewer fields")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.rest {
            [map] => TermDeserializer {
                term: map,
                depth: self.depth,
            }
            .deserialize_map(visitor),
            _ => Err(SerdeError(format!(
                "variant {} needs {{Tag, #{{..}}}}",
                self.tag
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ::serde::{Deserialize, Serialize};
    use bytes::Bytes;

    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Person {
        name: String,
        age: u32,
        email: Option<String>,
        tags: Vec<String>,
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Msg {
        Ping,
        Echo(String),
        Move(i32, i32),
        Resize { width: u16, height: u16 },
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Pair(i64, bool);

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Meters(f64);

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Marker;

    /// Bytes serialised as bytes (what `serde_bytes` does).
    #[derive(Debug, PartialEq)]
    struct Blob(Vec<u8>);

    impl Serialize for Blob {
        fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> Deserialize<'de> for Blob {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Blob, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Blob;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<Blob, E> {
                    Ok(Blob(v.to_vec()))
                }
                fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> std::result::Result<Blob, E> {
                    Ok(Blob(v))
                }
            }
            d.deserialize_bytes(V)
        }
    }

    /// `value` maps to the term printed as `shown`, survives the external
    /// format, and comes back equal.
    fn round_trip<T>(value: &T, shown: &str)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug,
    {
        let t = to_term(value).unwrap();
        assert_eq!(t.to_string(), shown);
        let wire = Term::decode(&t.encode()).unwrap();
        assert_eq!(wire, t);
        let back: T = from_term(&wire).unwrap();
        assert_eq!(&back, value);
    }

    #[test]
    fn structs_are_maps_with_atom_keys() {
        round_trip(
            &Person {
                name: "Ada".into(),
                age: 36,
                email: None,
                tags: vec!["x".into()],
            },
            "#{age => 36,email => undefined,name => <<65,100,97>>,tags => [<<120>>]}",
        );
        let t = to_term(&Person {
            name: "Bo".into(),
            age: 1,
            email: Some("b@x".into()),
            tags: vec![],
        })
        .unwrap();
        assert_eq!(
            t.map_get(&Term::atom("email").unwrap()).unwrap().as_str(),
            Some("b@x")
        );
        assert!(t.map_get(&Term::atom("tags").unwrap()).unwrap().is_nil());
    }

    #[test]
    fn enums_are_atoms_and_tagged_tuples() {
        round_trip(&Msg::Ping, "ping");
        round_trip(&Msg::Echo("hi".into()), "{echo,<<104,105>>}");
        round_trip(&Msg::Move(-1, 2), "{move,-1,2}");
        round_trip(
            &Msg::Resize {
                width: 3,
                height: 4,
            },
            "{resize,#{height => 4,width => 3}}",
        );
        round_trip(&vec![Msg::Ping, Msg::Move(0, 0)], "[ping,{move,0,0}]");
    }

    #[test]
    fn tuples_units_and_newtypes() {
        round_trip(&(1u8, "a".to_string(), true), "{1,<<97>>,true}");
        round_trip(&Pair(-5, false), "{-5,false}");
        round_trip(&Meters(1.5), "1.5");
        round_trip(&(), "{}");
        round_trip(&Marker, "{}");
        round_trip(&Some(()), "{}");
        round_trip(&None::<()>, "undefined");
        round_trip(&Some(7u64), "7");
    }

    #[test]
    fn scalars() {
        round_trip(&true, "true");
        round_trip(&'λ', "<<206,187>>");
        round_trip(&"é".to_string(), "<<195,169>>");
        round_trip(&Blob(vec![0, 255]), "<<0,255>>");
        round_trip(&u64::MAX, "18446744073709551615");
        round_trip(&i128::MIN, &i128::MIN.to_string());
        round_trip(&u128::MAX, &u128::MAX.to_string());
        round_trip(&-0.25f64, "-0.25");
        round_trip(&vec![1u8, 2], "[1,2]");
        let mut m = BTreeMap::new();
        m.insert(1i32, "one".to_string());
        m.insert(2, "two".to_string());
        round_trip(&m, "#{1 => <<111,110,101>>,2 => <<116,119,111>>}");
    }

    #[test]
    fn decoding_is_lenient_where_erlang_is_loose() {
        // Strings as atoms or charlists, borrowed where possible.
        let atom = Term::atom("hello").unwrap();
        assert_eq!(from_term::<String>(&atom).unwrap(), "hello");
        let chars = Term::ByteList(Bytes::from_static(b"abc"));
        assert_eq!(from_term::<String>(&chars).unwrap(), "abc");
        let bin = Term::from("borrowed");
        let s: &str = from_term(&bin).unwrap();
        assert_eq!(s, "borrowed");
        // Elixir's nil is None.
        assert_eq!(
            from_term::<Option<u8>>(&Term::atom("nil").unwrap()).unwrap(),
            None
        );
        // A struct with binary keys (an Elixir map with string keys).
        let m = Term::map(vec![
            (Term::from("width"), Term::Int(1)),
            (Term::from("height"), Term::Int(2)),
        ]);
        let r: Msg = from_term(&Term::from((Term::atom("resize").unwrap(), m))).unwrap();
        assert_eq!(
            r,
            Msg::Resize {
                width: 1,
                height: 2
            }
        );
        // A sequence from a tuple, a float from an integer.
        assert_eq!(from_term::<Vec<i32>>(&Term::from((1, 2))).unwrap(), [1, 2]);
        assert_eq!(from_term::<f64>(&Term::Int(3)).unwrap(), 3.0);
    }

    #[test]
    fn mismatches_are_errors() {
        let e = from_term::<u8>(&Term::Int(300)).unwrap_err();
        assert!(e.to_string().contains("300"), "{e}");
        let e = from_term::<String>(&Term::Int(1)).unwrap_err();
        assert!(e.to_string().contains("an integer"), "{e}");
        assert!(from_term::<Msg>(&Term::atom("nope").unwrap()).is_err());
        assert!(from_term::<(u8, u8)>(&Term::from((1, 2, 3))).is_err());
        assert!(from_term::<Person>(&Term::Nil).is_err());
        assert!(from_term::<bool>(&Term::atom("yes").unwrap()).is_err());
        // Atoms are never created by decoding: unknown variants fail.
        assert!(from_term::<Msg>(&Term::from("zzz_not_a_variant")).is_err());
    }

    #[test]
    fn depth_is_limited() {
        let mut t = Term::Int(1);
        for _ in 0..MAX_DEPTH + 10 {
            t = Term::List(vec![t]);
        }
        #[derive(Deserialize, Debug)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum Nested {
            Leaf(i64),
            List(Vec<Nested>),
        }
        let e = from_term::<Nested>(&t).unwrap_err();
        assert!(!e.to_string().is_empty());
        let ok = {
            let mut t = Term::Int(1);
            for _ in 0..MAX_DEPTH / 2 {
                t = Term::List(vec![t]);
            }
            t
        };
        assert!(from_term::<Nested>(&ok).is_ok());
    }
}
