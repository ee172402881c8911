//! [`Message`]: one decoded Jupyter message, and how replies are made.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ProtocolError;
use crate::header::Header;
use crate::signing::Signer;
use crate::wire::{split_frames, WireFrames, WireLimits};

/// A JSON object kept as the exact bytes it arrived in.
///
/// Used for parent headers: a reply's `parent_header` is the request's
/// header frame byte for byte, so clients that compare it (or carry keys
/// this kernel does not know) see exactly what they sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson(Bytes);

impl RawJson {
    /// `{}`, the parent of messages that answer nothing.
    pub fn empty_object() -> Self {
        RawJson(Bytes::from_static(b"{}"))
    }

    pub fn from_bytes(bytes: Bytes) -> Self {
        RawJson(bytes)
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Parses the bytes as `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0)
    }

    /// The `msg_id` inside, if this is a header.
    pub fn msg_id(&self) -> Option<String> {
        let v: Value = self.parse().ok()?;
        v.get("msg_id")?.as_str().map(str::to_owned)
    }
}

/// One Jupyter message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// ROUTER routing identities; replies go back to these.
    pub identities: Vec<Bytes>,
    pub header: Header,
    /// The header frame exactly as received; `None` for messages built here.
    pub raw_header: Option<RawJson>,
    pub parent_header: RawJson,
    pub metadata: Map<String, Value>,
    pub content: Value,
    pub buffers: Vec<Bytes>,
}

impl Message {
    /// A new message with no parent.
    pub fn new(header: Header, content: impl Serialize) -> Self {
        Message {
            identities: Vec::new(),
            header,
            raw_header: None,
            parent_header: RawJson::empty_object(),
            metadata: Map::new(),
            content: to_value(content),
            buffers: Vec::new(),
        }
    }

    /// The `msg_type` from the header.
    pub fn msg_type(&self) -> &str {
        &self.header.msg_type
    }

    /// A message answering (or published on behalf of) `self`: same routing
    /// identities, `parent_header` a byte copy of this message's header.
    pub fn child(&self, header: Header, content: impl Serialize) -> Message {
        Message {
            identities: self.identities.clone(),
            header,
            raw_header: None,
            parent_header: self.header_bytes(),
            metadata: Map::new(),
            content: to_value(content),
            buffers: Vec::new(),
        }
    }

    /// This message's header as raw JSON (the received bytes when known).
    pub fn header_bytes(&self) -> RawJson {
        match &self.raw_header {
            Some(raw) => raw.clone(),
            None => RawJson(Bytes::from(
                serde_json::to_vec(&self.header).unwrap_or_else(|_| b"{}".to_vec()),
            )),
        }
    }

    /// Parses the content as `T`, naming the message type on failure.
    pub fn parse_content<T: DeserializeOwned>(&self) -> Result<T, ProtocolError> {
        T::deserialize(&self.content).map_err(|source| ProtocolError::Content {
            msg_type: self.header.msg_type.clone(),
            source,
        })
    }

    /// Decodes raw frames: split, verify the signature, parse the JSON.
    pub fn decode(
        frames: Vec<Bytes>,
        signer: &Signer,
        limits: &WireLimits,
    ) -> Result<Message, ProtocolError> {
        let wire = split_frames(frames, limits)?;
        wire.verify(signer)?;
        Self::from_wire(wire)
    }

    fn from_wire(wire: WireFrames) -> Result<Message, ProtocolError> {
        let header_value = parse_object(&wire.header, "header")?;
        for field in ["msg_id", "msg_type"] {
            if !header_value.get(field).is_some_and(Value::is_string) {
                return Err(ProtocolError::MissingHeaderField(field));
            }
        }
        let header: Header =
            serde_json::from_value(Value::Object(header_value)).map_err(|source| {
                ProtocolError::Json {
                    frame: "header",
                    source,
                }
            })?;
        parse_object(&wire.parent_header, "parent_header")?;
        let metadata = parse_object(&wire.metadata, "metadata")?;
        let content = Value::Object(parse_object(&wire.content, "content")?);
        Ok(Message {
            identities: wire.identities,
            header,
            raw_header: Some(RawJson(wire.header)),
            parent_header: RawJson(wire.parent_header),
            metadata,
            content,
            buffers: wire.buffers,
        })
    }

    /// Encodes to signed frames in wire order.
    pub fn encode(&self, signer: &Signer) -> Vec<Bytes> {
        let mut wire = WireFrames {
            identities: self.identities.clone(),
            signature: Bytes::new(),
            header: self.header_bytes().0,
            parent_header: self.parent_header.0.clone(),
            metadata: Bytes::from(json_bytes(&self.metadata)),
            content: Bytes::from(json_bytes(&self.content)),
            buffers: self.buffers.clone(),
        };
        wire.sign(signer);
        wire.into_frames()
    }
}

fn parse_object(bytes: &[u8], frame: &'static str) -> Result<Map<String, Value>, ProtocolError> {
    // Some clients send an empty frame for an empty dict.
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ProtocolError::NotAnObject { frame }),
        Err(source) => Err(ProtocolError::Json { frame, source }),
    }
}

fn to_value(content: impl Serialize) -> Value {
    // Content types in this crate serialize infallibly (no non-string map keys).
    serde_json::to_value(content).unwrap_or_else(|_| Value::Object(Map::new()))
}

fn json_bytes(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(signer: &Signer) -> Vec<Bytes> {
        let header = br#"{"msg_id":"m1","msg_type":"execute_request","session":"s","username":"u","date":"2026-01-01T00:00:00.000000Z","version":"5.4","x-custom":[1,2]}"#;
        let mut wire = WireFrames {
            identities: vec![Bytes::from_static(b"client")],
            signature: Bytes::new(),
            header: Bytes::from_static(header),
            parent_header: Bytes::from_static(b"{}"),
            metadata: Bytes::from_static(b"{}"),
            content: Bytes::from_static(br#"{"code":"1"}"#),
            buffers: vec![],
        };
        wire.sign(signer);
        wire.into_frames()
    }

    #[test]
    fn reply_parent_header_is_byte_copy_of_request_header() {
        let signer = Signer::new(b"k");
        let frames = request(&signer);
        let req = Message::decode(frames.clone(), &signer, &WireLimits::default()).unwrap();
        let reply = req.child(
            Header::new("execute_reply", "kernel", "kernel"),
            json!({"status":"ok"}),
        );
        let out = reply.encode(&signer);
        assert_eq!(out[0], frames[0], "routed back to the requester");
        let wire = split_frames(out, &WireLimits::default()).unwrap();
        assert_eq!(wire.parent_header, frames[3]);
        wire.verify(&signer).unwrap();
    }

    #[test]
    fn wrong_key_is_rejected() {
        let frames = request(&Signer::new(b"right"));
        let err = Message::decode(frames, &Signer::new(b"wrong"), &WireLimits::default());
        assert!(matches!(err, Err(ProtocolError::Signature(_))));
    }

    #[test]
    fn header_without_msg_type_is_rejected() {
        let signer = Signer::unsigned();
        let mut wire = split_frames(request(&signer), &WireLimits::default()).unwrap();
        wire.header = Bytes::from_static(br#"{"msg_id":"x"}"#);
        let err = Message::decode(wire.into_frames(), &signer, &WireLimits::default());
        assert!(matches!(
            err,
            Err(ProtocolError::MissingHeaderField("msg_type"))
        ));
    }
}
