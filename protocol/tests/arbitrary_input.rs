//! Parsing arbitrary bytes never panics: every input ends in a message or
//! a typed error.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::json;
use skillkernel_protocol::{ConnectionInfo, Header, Message, Signer, WireLimits, DELIMITER};

fn frame() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        Just(Bytes::from_static(DELIMITER)),
        Just(Bytes::from_static(b"{}")),
        Just(Bytes::from_static(
            br#"{"msg_id":"a","msg_type":"execute_request"}"#
        )),
        "[ -~]{0,40}".prop_map(|s| Bytes::from(s.into_bytes())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_arbitrary_frames_never_panics(frames in prop::collection::vec(frame(), 0..12), signed in any::<bool>()) {
        let signer = if signed { Signer::new(b"key") } else { Signer::unsigned() };
        let _ = Message::decode(frames, &signer, &WireLimits::default());
    }

    #[test]
    fn mutating_a_valid_message_is_caught_or_harmless(
        index in 0usize..7,
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let signer = Signer::new(b"key");
        let msg = Message::new(Header::new("execute_request", "s", "u"), json!({"code": "1"}));
        let mut frames = msg.encode(&signer);
        let i = index % frames.len();
        let original = frames[i].clone();
        frames[i] = Bytes::from(bytes);
        let changed = frames[i] != original;
        let result = Message::decode(frames, &signer, &WireLimits::default());
        // Changing any signed or structural frame must not yield a message
        // that verifies, except when the "change" left it as it was.
        if changed && i >= 1 {
            prop_assert!(result.is_err());
        }
    }

    #[test]
    fn connection_file_parsing_never_panics(text in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = ConnectionInfo::parse(&text, std::path::Path::new("fuzz.json"));
    }

    #[test]
    fn round_trip_preserves_content(code in ".{0,200}", key in "[a-f0-9]{0,64}") {
        let signer = Signer::new(key.as_bytes());
        let msg = Message::new(Header::new("execute_request", "s", "u"), json!({"code": code}));
        let back = Message::decode(msg.encode(&signer), &signer, &WireLimits::default()).unwrap();
        prop_assert_eq!(back.content, msg.content);
        prop_assert_eq!(back.header, msg.header);
    }
}
