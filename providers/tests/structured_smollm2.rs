//! Constrained decoding on the real default model: whatever the input,
//! the reply is JSON valid for the schema.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::{json, Value};
use skillkernel_providers::candle::{GgufFile, LoadedModel};
use skillkernel_providers::{ChatMessage, GenerationOptions, OutputFormat};
use tokio_util::sync::CancellationToken;

fn model() -> LoadedModel {
    let dir = std::env::var_os("SKILLKERNEL_MODEL_DIR")
        .map(PathBuf::from)
        .expect("set SKILLKERNEL_MODEL_DIR to a directory holding the default model (scripts/test does)");
    let gguf = GgufFile::open(&dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    LoadedModel::load_with_threads("smollm2", gguf, 2).unwrap()
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "city": {"type": "string", "maxLength": 40},
            "mood": {"enum": ["happy", "sad", "neutral"]},
            "contact": {
                "type": "object",
                "properties": {
                    "email": {"type": "string", "pattern": "^[a-z0-9.]{1,20}@[a-z0-9]{1,20}\\.[a-z]{2,4}$"}
                },
                "required": ["email"],
                "additionalProperties": false
            },
            "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3}
        },
        "required": ["name", "age", "city", "mood", "contact", "hobbies"],
        "additionalProperties": false
    })
}

const INPUTS: [&str; 20] = [
    "Anna is 34, lives in Berlin, loves cycling and chess. Reach her at anna@example.com. She is cheerful.",
    "Bob (age 51) from Toronto is grumpy today. bob.smith@mail.ca. Hobbies: fishing.",
    "My neighbour Carla, 28, Lisbon, surfing, reading, cooking; carla@pt.org",
    "Dmitri is a 45 year old engineer in Kyiv who enjoys photography. Email dmitri@ua.net",
    "eve@secret.io belongs to Eve, 22, of Paris. She is sad about the rain.",
    "Frank, eighty years old, Chicago, gardening. frank80@aol.com",
    "Grace Hopper, 85, Arlington, programming, navy. grace@navy.mil",
    "Hiro from Osaka turned 19 yesterday and plays baseball and guitar. hiro@jp.co",
    "Ines, 63, Madrid — painting. Contact: ines@arte.es. Feeling neutral.",
    "Jamal is thirty-two, lives in Nairobi, runs marathons, jamal@run.ke",
    "Kate, 40, London, no hobbies to speak of, kate@uk.org, pretty happy",
    "Lars 37 Oslo skiing lars@no.no",
    "Mei Lin is a 29-year-old designer in Shanghai; she loves tea and hiking. meilin@cn.com",
    "Nadia (56), Cairo, writes poetry. nadia@eg.net",
    "Omar, 24, Dubai, football and gaming, omar@ae.ae — very happy today!",
    "Priya is 31 and lives in Bangalore. She codes and dances. priya@in.in",
    "Quentin, 47, Lyon, wine tasting, quentin@fr.fr",
    "Rosa (70) in Mexico City knits and bakes; rosa@mx.mx; a little sad.",
    "Sam, 15, Sydney, skateboarding, sam@au.au",
    "Tomasz, 39, Warsaw, chess and jazz, tomasz@pl.pl, neutral mood.",
];

fn messages(text: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage::new(
            "system",
            "Extract the person described by the user as JSON.",
        ),
        ChatMessage::new("user", text),
    ]
}

#[test]
fn every_extraction_validates_against_its_schema() {
    let mut model = model();
    let schema = person_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let format = OutputFormat::JsonSchema {
        schema: schema.clone(),
    };
    let options = GenerationOptions {
        max_tokens: 256,
        ..GenerationOptions::default()
    };
    let cancel = CancellationToken::new();
    for input in INPUTS {
        let mut text = String::new();
        let started = Instant::now();
        let stats = model
            .generate_as(
                &messages(input),
                &options,
                Some(&format),
                &cancel,
                &mut |p| text.push_str(p),
            )
            .unwrap();
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}) for {input:?}: {text}"));
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{input:?} gave {text}: {errors:?}");
        assert_eq!(stats.finish_reason, "stop", "{text}");
        eprintln!("{:>5.0} ms {text}", started.elapsed().as_secs_f64() * 1e3);
    }
}

#[test]
fn json_mode_returns_an_object_and_free_decoding_is_untouched() {
    let mut model = model();
    let cancel = CancellationToken::new();
    let options = GenerationOptions {
        max_tokens: 96,
        ..GenerationOptions::default()
    };
    let mut text = String::new();
    model
        .generate_as(
            &messages("List two fruits."),
            &options,
            Some(&OutputFormat::Json),
            &cancel,
            &mut |p| text.push_str(p),
        )
        .unwrap();
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(value.is_object(), "{text}");
    // The same model, unconstrained, answers in prose (the control: the
    // grammar, not the prompt, made the JSON).
    let mut free = String::new();
    model
        .generate(&messages("List two fruits."), &options, &cancel, &mut |p| {
            free.push_str(p)
        })
        .unwrap();
    assert!(serde_json::from_str::<Value>(&free).is_err(), "{free}");
}
