//! Serializers and deserializers, with Kafka's encodings: bytes as they are, UTF-8
//! strings, integers and floats big-endian in their fixed widths (Kafka's
//! `ShortSerializer` ... `DoubleSerializer`), and JSON through serde.

use std::marker::PhantomData;

/// Why a value could not be (de)serialized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a {type_name} for topic '{topic}': {reason}")]
pub struct SerdeError {
    /// "serialize" or "deserialize".
    pub action: &'static str,
    /// The Rust type.
    pub type_name: &'static str,
    /// The topic.
    pub topic: String,
    /// What was wrong.
    pub reason: String,
}

impl SerdeError {
    fn deserialize<T: ?Sized>(topic: &str, reason: impl Into<String>) -> Self {
        Self {
            action: "deserialize",
            type_name: std::any::type_name::<T>(),
            topic: topic.into(),
            reason: reason.into(),
        }
    }
}

/// Turns a value into bytes for `topic`.
pub trait Serializer<T: ?Sized>: Send + Sync {
    /// The bytes of `value`.
    fn serialize(&self, topic: &str, value: &T) -> Result<Vec<u8>, SerdeError>;
}

/// Turns bytes read from `topic` into a value.
pub trait Deserializer<T>: Send + Sync {
    /// The value of `data`.
    fn deserialize(&self, topic: &str, data: &[u8]) -> Result<T, SerdeError>;
}

/// Bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serializer<[u8]> for BytesSerde {
    fn serialize(&self, _topic: &str, value: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(value.to_vec())
    }
}

impl Serializer<Vec<u8>> for BytesSerde {
    fn serialize(&self, _topic: &str, value: &Vec<u8>) -> Result<Vec<u8>, SerdeError> {
        Ok(value.clone())
    }
}

impl Deserializer<Vec<u8>> for BytesSerde {
    fn deserialize(&self, _topic: &str, data: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(data.to_vec())
    }
}

impl Deserializer<bytes::Bytes> for BytesSerde {
    fn deserialize(&self, _topic: &str, data: &[u8]) -> Result<bytes::Bytes, SerdeError> {
        Ok(bytes::Bytes::copy_from_slice(data))
    }
}

/// UTF-8 strings; invalid UTF-8 is an error, not a lossy conversion.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serializer<str> for StringSerde {
    fn serialize(&self, _topic: &str, value: &str) -> Result<Vec<u8>, SerdeError> {
        Ok(value.as_bytes().to_vec())
    }
}

impl Serializer<String> for StringSerde {
    fn serialize(&self, _topic: &str, value: &String) -> Result<Vec<u8>, SerdeError> {
        Ok(value.as_bytes().to_vec())
    }
}

impl Deserializer<String> for StringSerde {
    fn deserialize(&self, topic: &str, data: &[u8]) -> Result<String, SerdeError> {
        String::from_utf8(data.to_vec()).map_err(|e| SerdeError::deserialize::<String>(topic, e.to_string()))
    }
}

/// Numbers in Kafka's big-endian fixed-width encodings.
#[derive(Debug, Clone, Copy, Default)]
pub struct NumberSerde;

macro_rules! number_serde {
    ($($t:ty),*) => {$(
        impl Serializer<$t> for NumberSerde {
            fn serialize(&self, _topic: &str, value: &$t) -> Result<Vec<u8>, SerdeError> {
                Ok(value.to_be_bytes().to_vec())
            }
        }

        impl Deserializer<$t> for NumberSerde {
            fn deserialize(&self, topic: &str, data: &[u8]) -> Result<$t, SerdeError> {
                let bytes = data.try_into().map_err(|_| {
                    SerdeError::deserialize::<$t>(
                        topic,
                        format!("{} bytes, expected {}", data.len(), std::mem::size_of::<$t>()),
                    )
                })?;
                Ok(<$t>::from_be_bytes(bytes))
            }
        }
    )*};
}

number_serde!(i16, i32, i64, u16, u32, u64, f32, f64);

/// JSON through serde.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> JsonSerde<T> {
    /// A JSON serde for `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T: serde::Serialize> Serializer<T> for JsonSerde<T> {
    fn serialize(&self, topic: &str, value: &T) -> Result<Vec<u8>, SerdeError> {
        serde_json::to_vec(value).map_err(|e| SerdeError {
            action: "serialize",
            type_name: std::any::type_name::<T>(),
            topic: topic.into(),
            reason: e.to_string(),
        })
    }
}

impl<T: serde::de::DeserializeOwned> Deserializer<T> for JsonSerde<T> {
    fn deserialize(&self, topic: &str, data: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(data).map_err(|e| SerdeError::deserialize::<T>(topic, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_use_kafkas_big_endian_encodings() {
        // Kafka's IntegerSerializer writes 42 as 00 00 00 2a; LongSerializer as 8 bytes.
        assert_eq!(NumberSerde.serialize("t", &42i32).unwrap(), [0, 0, 0, 42]);
        assert_eq!(NumberSerde.serialize("t", &-2i64).unwrap(), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(NumberSerde.serialize("t", &1.5f64).unwrap(), 1.5f64.to_bits().to_be_bytes());
        let back: i32 = NumberSerde.deserialize("t", &[0, 0, 1, 0]).unwrap();
        assert_eq!(back, 256);
        let short: Result<i64, _> = NumberSerde.deserialize("orders", &[1, 2, 3]);
        assert_eq!(short.unwrap_err().to_string(), "cannot deserialize a i64 for topic 'orders': 3 bytes, expected 8");
    }

    #[test]
    fn strings_bytes_and_json_round_trip_and_bad_input_is_an_error() {
        assert_eq!(StringSerde.serialize("t", "héllo").unwrap(), "héllo".as_bytes());
        let s: String = StringSerde.deserialize("t", "héllo".as_bytes()).unwrap();
        assert_eq!(s, "héllo");
        let bad: Result<String, _> = StringSerde.deserialize("t", &[0xff, 0xfe]);
        assert!(bad.unwrap_err().reason.contains("invalid utf-8"));
        let b: Vec<u8> = BytesSerde.deserialize("t", &[1, 2]).unwrap();
        assert_eq!(BytesSerde.serialize("t", &b).unwrap(), [1, 2]);

        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Order {
            id: u32,
            item: String,
        }
        let json = JsonSerde::<Order>::new();
        let bytes = json.serialize("t", &Order { id: 7, item: "tea".into() }).unwrap();
        assert_eq!(bytes, br#"{"id":7,"item":"tea"}"#);
        assert_eq!(json.deserialize("t", &bytes).unwrap(), Order { id: 7, item: "tea".into() });
        assert!(json.deserialize("t", b"{\"id\":").is_err());
    }
}
