//! MessagePack encoding of Kora's messages and values, with numbers as MessagePack numbers.
//!
//! Kora keeps every JSON number exactly (serde_json's `arbitrary_precision`: a Python int of
//! any size stays an integer, issue #14). serde_json then serializes *every* number as a
//! one-field struct holding its digits, which is what JSON needs and MessagePack does not:
//! this adapter writes a number that fits as a MessagePack integer (i64 or u64) or float, and
//! only an integer past 64 bits as serde_json's struct, a map `{"$serde_json::private::Number":
//! "<digits>"}` that serde_json reads back as that number (`proto/README.md`).
//!
//! Owns: [`to_vec_named`]. Must not: change anything but numbers (every other call is
//! forwarded to `rmp_serde` unchanged).

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// serde_json's name for the struct a number serializes as (`serde_json::number::TOKEN`).
pub const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// `rmp_serde::to_vec_named` with numbers written as MessagePack numbers.
pub fn to_vec_named<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut buf = Vec::new();
    let mut ser = rmp_serde::Serializer::new(&mut buf).with_struct_map();
    v.serialize(Native(&mut ser))?;
    Ok(buf)
}

/// A serializer that forwards to `S`, rewriting serde_json's number struct.
struct Native<S>(S);

/// A value serialized through [`Native`].
struct Wrap<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Wrap<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Native(s))
    }
}

/// Writes a number given as serde_json's digits with `s`: as a MessagePack number when one
/// holds it exactly, else as its digits (an integer past 64 bits; a float beyond `f64`, which
/// input checks refuse, is still never turned into an infinity here).
fn number<S: Serializer>(s: S, digits: &str) -> Result<S::Ok, S::Error> {
    if let Ok(i) = digits.parse::<i64>() {
        return s.serialize_i64(i);
    }
    if let Ok(u) = digits.parse::<u64>() {
        return s.serialize_u64(u);
    }
    let integer = !digits.contains(['.', 'e', 'E']);
    match digits.parse::<f64>() {
        Ok(f) if !integer && f.is_finite() => s.serialize_f64(f),
        _ => {
            let mut st = s.serialize_struct(NUMBER_TOKEN, 1)?;
            st.serialize_field(NUMBER_TOKEN, digits)?;
            st.end()
        }
    }
}

macro_rules! forward {
    ($($m:ident($t:ty)),* $(,)?) => {
        $(fn $m(self, v: $t) -> Result<S::Ok, S::Error> { self.0.$m(v) })*
    };
}

impl<S: Serializer> Serializer for Native<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Native<S::SerializeSeq>;
    type SerializeTuple = Native<S::SerializeTuple>;
    type SerializeTupleStruct = Native<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Native<S::SerializeTupleVariant>;
    type SerializeMap = Native<S::SerializeMap>;
    type SerializeStruct = NativeStruct<S>;
    type SerializeStructVariant = Native<S::SerializeStructVariant>;

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Wrap(v))
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Wrap(v))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Wrap(v))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Native)
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Native)
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Native)
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(Native)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Native)
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        if name == NUMBER_TOKEN {
            return Ok(NativeStruct::Number(Some(self.0), None));
        }
        self.0.serialize_struct(name, len).map(NativeStruct::Struct)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(Native)
    }
    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A struct being written: serde_json's number (the serializer, until its digits come) or
/// any other struct.
enum NativeStruct<S: Serializer> {
    Number(Option<S>, Option<S::Ok>),
    Struct(S::SerializeStruct),
}

impl<S: Serializer> SerializeStruct for NativeStruct<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), S::Error> {
        match self {
            NativeStruct::Struct(st) => st.serialize_field(key, &Wrap(v)),
            NativeStruct::Number(s, done) => {
                let (Some(s), None) = (s.take(), done.as_ref()) else {
                    return Err(ser::Error::custom("a number has one field"));
                };
                *done = Some(v.serialize(Digits(s))?);
                Ok(())
            }
        }
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        match self {
            NativeStruct::Struct(st) => st.end(),
            NativeStruct::Number(_, Some(ok)) => Ok(ok),
            NativeStruct::Number(_, None) => Err(ser::Error::custom("a number without digits")),
        }
    }
}

/// Takes serde_json's digits (a `str`) and writes the number with `S`: no copy of them.
struct Digits<S>(S);

macro_rules! not_digits {
    ($($m:ident($($t:ty),*)),* $(,)?) => {
        $(fn $m(self, $(_: $t),*) -> Result<S::Ok, S::Error> {
            Err(ser::Error::custom("a number's digits are a string"))
        })*
    };
}

impl<S: Serializer> Serializer for Digits<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = ser::Impossible<S::Ok, S::Error>;
    type SerializeTuple = ser::Impossible<S::Ok, S::Error>;
    type SerializeTupleStruct = ser::Impossible<S::Ok, S::Error>;
    type SerializeTupleVariant = ser::Impossible<S::Ok, S::Error>;
    type SerializeMap = ser::Impossible<S::Ok, S::Error>;
    type SerializeStruct = ser::Impossible<S::Ok, S::Error>;
    type SerializeStructVariant = ser::Impossible<S::Ok, S::Error>;

    fn serialize_str(self, digits: &str) -> Result<S::Ok, S::Error> {
        number(self.0, digits)
    }
    not_digits!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<S::Ok, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<S::Ok, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        Err(ser::Error::custom("a number's digits are a string"))
    }
}

macro_rules! compound {
    ($tr:ident, $($m:ident),*) => {
        impl<S: $tr> $tr for Native<S> {
            type Ok = S::Ok;
            type Error = S::Error;
            $(fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), S::Error> {
                self.0.$m(&Wrap(v))
            })*
            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        }
    };
}
compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);
compound!(SerializeMap, serialize_key, serialize_value);

impl<S: SerializeStructVariant> SerializeStructVariant for Native<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), S::Error> {
        self.0.serialize_field(key, &Wrap(v))
    }
    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    fn round_trip(v: &Value) -> (Vec<u8>, Value) {
        let bytes = super::to_vec_named(v).unwrap();
        (bytes.clone(), rmp_serde::from_slice(&bytes).unwrap())
    }

    #[test]
    fn numbers_that_fit_are_messagepack_numbers() {
        for (v, bytes) in [
            (json!(1), vec![0x01]),
            (json!(-1), vec![0xff]),
            (json!(u64::MAX), [vec![0xcf], vec![0xff; 8]].concat()),
            (
                json!(1.5),
                [vec![0xcb], 1.5f64.to_be_bytes().to_vec()].concat(),
            ),
        ] {
            let (b, back) = round_trip(&v);
            assert_eq!(b, bytes, "{v}");
            assert_eq!(back, v);
        }
    }

    #[test]
    fn integers_past_64_bits_stay_exact_integers() {
        let text = r#"{"id": 123456789012345678901234567890, "neg": -98765432109876543210, "xs": [18446744073709551616, 2]}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        let (_, back) = round_trip(&v);
        assert_eq!(back, v);
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            r#"{"id":123456789012345678901234567890,"neg":-98765432109876543210,"xs":[18446744073709551616,2]}"#
        );
        assert!(back["id"].is_number() && back["id"].as_f64().is_some());
    }
}
