//! Serdes: how keys and values become bytes on topics and in stores, and back.
//!
//! A [`Serde`] names the one Rust type it handles ([`Serde::Target`]), so the DSL knows the
//! types of every stream at compile time. Serialization writes into a buffer the caller
//! reuses, so a record costs no allocation on its way out.
//!
//! Kafka has null keys and null values (tombstones). A plain serde refuses a null, with an
//! error that says so; [`Serdes::optional`] wraps a serde so that `None` is a null.
//!
//! ```
//! use freshet_streams::serde::{Serde, Serdes};
//!
//! let mut out = Vec::new();
//! Serdes::i64().serialize("counts", &42, &mut out).unwrap();
//! assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 42]); // Kafka's LongSerializer
//! let key = Serdes::optional(Serdes::string());
//! assert_eq!(key.deserialize_nullable("lines", None).unwrap(), None);
//! ```

use std::marker::PhantomData;
use std::sync::Arc;

pub use freshet_log::client::serde::SerdeError;

/// Turns one type into bytes and back, as Kafka's `Serde<T>`.
pub trait Serde: Clone + Send + Sync + 'static {
    /// The type this serde handles.
    type Target;

    /// Appends the bytes of `value` to `out` (which the caller has cleared).
    fn serialize(&self, topic: &str, value: &Self::Target, out: &mut Vec<u8>) -> Result<(), SerdeError>;

    /// The value that `data` encodes.
    fn deserialize(&self, topic: &str, data: &[u8]) -> Result<Self::Target, SerdeError>;

    /// Like [`serialize`](Serde::serialize), but may decide that `value` is a null: then it
    /// returns `Ok(false)` and writes nothing. Only [`OptionSerde`] does.
    fn serialize_nullable(&self, topic: &str, value: &Self::Target, out: &mut Vec<u8>) -> Result<bool, SerdeError> {
        self.serialize(topic, value, out)?;
        Ok(true)
    }

    /// Like [`deserialize`](Serde::deserialize), for a key or value that may be null. A plain
    /// serde refuses a null.
    fn deserialize_nullable(&self, topic: &str, data: Option<&[u8]>) -> Result<Self::Target, SerdeError> {
        match data {
            Some(data) => self.deserialize(topic, data),
            None => Err(serde_error::<Self::Target>(
                "deserialize",
                topic,
                "the key or value is null; wrap the serde in Serdes::optional to accept nulls",
            )),
        }
    }
}

pub(crate) fn serde_error<T: ?Sized>(action: &'static str, topic: &str, reason: impl Into<String>) -> SerdeError {
    SerdeError { action, type_name: std::any::type_name::<T>(), topic: topic.to_string(), reason: reason.into() }
}

/// Constructors for the built-in serdes.
#[derive(Debug, Clone, Copy)]
pub struct Serdes;

impl Serdes {
    /// UTF-8 strings; invalid UTF-8 is an error.
    pub fn string() -> StringSerde {
        StringSerde
    }

    /// Bytes as they are.
    pub fn bytes() -> BytesSerde {
        BytesSerde
    }

    /// `i32`, big-endian in 4 bytes (Kafka's `IntegerSerde`).
    pub fn i32() -> NumberSerde<i32> {
        NumberSerde(PhantomData)
    }

    /// `i64`, big-endian in 8 bytes (Kafka's `LongSerde`).
    pub fn i64() -> NumberSerde<i64> {
        NumberSerde(PhantomData)
    }

    /// `u64`, big-endian in 8 bytes.
    pub fn u64() -> NumberSerde<u64> {
        NumberSerde(PhantomData)
    }

    /// `f64`, IEEE 754 big-endian in 8 bytes (Kafka's `DoubleSerde`).
    pub fn f64() -> NumberSerde<f64> {
        NumberSerde(PhantomData)
    }

    /// Any serde type as JSON.
    pub fn json<T>() -> JsonSerde<T>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + 'static,
    {
        JsonSerde(PhantomData)
    }

    /// `inner`, with `None` as a null key or value.
    pub fn optional<S: Serde>(inner: S) -> OptionSerde<S> {
        OptionSerde(inner)
    }

    /// `()`: ignores what it reads (also a null) and writes a null. For keys nobody needs.
    pub fn unit() -> UnitSerde {
        UnitSerde
    }

    /// A serde built from two functions, for types with their own encoding.
    pub fn from_fn<T, S, D>(serialize: S, deserialize: D) -> FnSerde<T>
    where
        T: 'static,
        S: Fn(&T, &mut Vec<u8>) -> Result<(), String> + Send + Sync + 'static,
        D: Fn(&[u8]) -> Result<T, String> + Send + Sync + 'static,
    {
        FnSerde { serialize: Arc::new(serialize), deserialize: Arc::new(deserialize) }
    }
}

/// UTF-8 strings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde for StringSerde {
    type Target = String;

    fn serialize(&self, _topic: &str, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    fn deserialize(&self, topic: &str, data: &[u8]) -> Result<String, SerdeError> {
        match std::str::from_utf8(data) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(serde_error::<String>("deserialize", topic, e.to_string())),
        }
    }
}

/// Bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde for BytesSerde {
    type Target = Vec<u8>;

    fn serialize(&self, _topic: &str, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value);
        Ok(())
    }

    fn deserialize(&self, _topic: &str, data: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(data.to_vec())
    }
}

/// A number in Kafka's big-endian fixed-width encoding.
pub struct NumberSerde<T>(PhantomData<fn() -> T>);

impl<T> Clone for NumberSerde<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for NumberSerde<T> {}

impl<T> std::fmt::Debug for NumberSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NumberSerde<{}>", std::any::type_name::<T>())
    }
}

macro_rules! number_serde {
    ($($t:ty),*) => {$(
        impl Serde for NumberSerde<$t> {
            type Target = $t;

            fn serialize(&self, _topic: &str, value: &$t, out: &mut Vec<u8>) -> Result<(), SerdeError> {
                out.extend_from_slice(&value.to_be_bytes());
                Ok(())
            }

            fn deserialize(&self, topic: &str, data: &[u8]) -> Result<$t, SerdeError> {
                match data.try_into() {
                    Ok(bytes) => Ok(<$t>::from_be_bytes(bytes)),
                    Err(_) => Err(serde_error::<$t>(
                        "deserialize",
                        topic,
                        format!("{} bytes, expected {}", data.len(), std::mem::size_of::<$t>()),
                    )),
                }
            }
        }
    )*};
}

number_serde!(i16, i32, i64, u16, u32, u64, f32, f64);

/// JSON through serde.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> std::fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T> Serde for JsonSerde<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    type Target = T;

    fn serialize(&self, topic: &str, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(&mut *out, value).map_err(|e| serde_error::<T>("serialize", topic, e.to_string()))
    }

    fn deserialize(&self, topic: &str, data: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(data).map_err(|e| serde_error::<T>("deserialize", topic, e.to_string()))
    }
}

/// A serde whose `None` is a null.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionSerde<S>(S);

impl<S: Serde> Serde for OptionSerde<S> {
    type Target = Option<S::Target>;

    fn serialize(&self, topic: &str, value: &Option<S::Target>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Some(v) => self.0.serialize(topic, v, out),
            None => Err(serde_error::<Self::Target>("serialize", topic, "None is a null and has no bytes")),
        }
    }

    fn deserialize(&self, topic: &str, data: &[u8]) -> Result<Option<S::Target>, SerdeError> {
        self.0.deserialize(topic, data).map(Some)
    }

    fn serialize_nullable(
        &self,
        topic: &str,
        value: &Option<S::Target>,
        out: &mut Vec<u8>,
    ) -> Result<bool, SerdeError> {
        match value {
            Some(v) => self.0.serialize_nullable(topic, v, out),
            None => Ok(false),
        }
    }

    fn deserialize_nullable(&self, topic: &str, data: Option<&[u8]>) -> Result<Option<S::Target>, SerdeError> {
        match data {
            Some(data) => self.0.deserialize(topic, data).map(Some),
            None => Ok(None),
        }
    }
}

/// `()`, written as a null.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

impl Serde for UnitSerde {
    type Target = ();

    fn serialize(&self, _topic: &str, _value: &(), _out: &mut Vec<u8>) -> Result<(), SerdeError> {
        Ok(())
    }

    fn deserialize(&self, _topic: &str, _data: &[u8]) -> Result<(), SerdeError> {
        Ok(())
    }

    fn serialize_nullable(&self, _topic: &str, _value: &(), _out: &mut Vec<u8>) -> Result<bool, SerdeError> {
        Ok(false)
    }

    fn deserialize_nullable(&self, _topic: &str, _data: Option<&[u8]>) -> Result<(), SerdeError> {
        Ok(())
    }
}

type SerializeFn<T> = Arc<dyn Fn(&T, &mut Vec<u8>) -> Result<(), String> + Send + Sync>;
type DeserializeFn<T> = Arc<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

/// A serde made of two functions ([`Serdes::from_fn`]).
pub struct FnSerde<T> {
    serialize: SerializeFn<T>,
    deserialize: DeserializeFn<T>,
}

impl<T> Clone for FnSerde<T> {
    fn clone(&self) -> Self {
        FnSerde { serialize: self.serialize.clone(), deserialize: self.deserialize.clone() }
    }
}

impl<T> std::fmt::Debug for FnSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FnSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T: 'static> Serde for FnSerde<T> {
    type Target = T;

    fn serialize(&self, topic: &str, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        (self.serialize)(value, out).map_err(|reason| serde_error::<T>("serialize", topic, reason))
    }

    fn deserialize(&self, topic: &str, data: &[u8]) -> Result<T, SerdeError> {
        (self.deserialize)(data).map_err(|reason| serde_error::<T>("deserialize", topic, reason))
    }
}

/// An object-safe view of a serde, for the places that keep serdes of many types behind one
/// pointer (typed store handles given to processors).
pub(crate) trait DynSerde<T>: Send + Sync {
    fn serialize_dyn(&self, topic: &str, value: &T, out: &mut Vec<u8>) -> Result<bool, SerdeError>;
    fn deserialize_dyn(&self, topic: &str, data: Option<&[u8]>) -> Result<T, SerdeError>;
}

impl<S: Serde> DynSerde<S::Target> for S {
    fn serialize_dyn(&self, topic: &str, value: &S::Target, out: &mut Vec<u8>) -> Result<bool, SerdeError> {
        Serde::serialize_nullable(self, topic, value, out)
    }

    fn deserialize_dyn(&self, topic: &str, data: Option<&[u8]>) -> Result<S::Target, SerdeError> {
        Serde::deserialize_nullable(self, topic, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<S: Serde>(serde: &S, value: &S::Target) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        serde.serialize_nullable("t", value, &mut out).unwrap().then_some(out)
    }

    #[test]
    fn builtins_use_kafkas_encodings() {
        assert_eq!(bytes(&Serdes::i32(), &42), Some(vec![0, 0, 0, 42]));
        assert_eq!(bytes(&Serdes::i64(), &-2), Some(vec![0xff; 7].into_iter().chain([0xfe]).collect()));
        assert_eq!(bytes(&Serdes::f64(), &1.5), Some(1.5f64.to_be_bytes().to_vec()));
        assert_eq!(bytes(&Serdes::string(), &"héllo".to_string()), Some("héllo".as_bytes().to_vec()));
        assert_eq!(Serdes::i64().deserialize("t", &[0, 0, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
        let short = Serdes::i64().deserialize("orders", &[1, 2, 3]).unwrap_err();
        assert_eq!(short.to_string(), "cannot deserialize a i64 for topic 'orders': 3 bytes, expected 8");
        assert!(Serdes::string().deserialize("t", &[0xff]).unwrap_err().reason.contains("invalid utf-8"));
    }

    #[test]
    fn nulls_need_an_optional_serde() {
        let plain = Serdes::string().deserialize_nullable("lines", None).unwrap_err();
        assert!(plain.reason.contains("Serdes::optional"), "{plain}");
        let optional = Serdes::optional(Serdes::string());
        assert_eq!(optional.deserialize_nullable("t", None).unwrap(), None);
        assert_eq!(optional.deserialize_nullable("t", Some(b"x")).unwrap(), Some("x".to_string()));
        assert_eq!(bytes(&optional, &None), None);
        assert_eq!(bytes(&optional, &Some("x".into())), Some(b"x".to_vec()));
        assert_eq!(bytes(&Serdes::unit(), &()), None);
        Serdes::unit().deserialize_nullable("t", Some(b"anything")).unwrap();
    }

    #[test]
    fn json_and_function_serdes() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Order {
            id: u32,
        }
        let json = Serdes::json::<Order>();
        assert_eq!(bytes(&json, &Order { id: 7 }), Some(br#"{"id":7}"#.to_vec()));
        assert_eq!(json.deserialize("t", br#"{"id":7}"#).unwrap(), Order { id: 7 });
        assert!(json.deserialize("t", b"{").is_err());
        let upper = Serdes::from_fn(
            |v: &String, out: &mut Vec<u8>| {
                out.extend(v.to_uppercase().bytes());
                Ok(())
            },
            |d: &[u8]| String::from_utf8(d.to_vec()).map_err(|e| e.to_string()),
        );
        assert_eq!(bytes(&upper, &"ab".to_string()), Some(b"AB".to_vec()));
        assert!(upper.deserialize("t", &[0xff]).is_err());
    }
}
