//! Constrained decoding: a JSON Schema becomes a mask over the vocabulary,
//! applied to the logits before each token is sampled, so the model can
//! only write JSON valid for the schema.
//!
//! The schema-to-mask work is llguidance's (the engine llama.cpp, vLLM and
//! SGLang use; `docs/structured-output.md` says why it and not
//! outlines-core). This module only adapts it: the model's vocabulary as
//! bytes ([`vocab`]), one parser factory per loaded model, compiled
//! grammars cached by schema so a skill's second run does not compile
//! again, and the mask written into the logits.
//!
//! JSON is generated compact with `", "` and `": "` separators and no
//! other whitespace: free whitespace lets a small model loop on newlines
//! until it runs out of tokens.

mod vocab;

use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::{OutputFormat, ProviderError};

/// Compiled grammars kept per model.
const CACHED_GRAMMARS: usize = 32;

/// Why a schema cannot constrain generation.
fn unsupported(why: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unsupported(format!(
        "the output schema cannot be turned into a token constraint: {why}"
    ))
}

/// The schema as llguidance compiles it: compact separators, no free
/// whitespace (unless the schema sets its own `x-guidance` options).
fn prepared(format: &OutputFormat) -> Result<Value, ProviderError> {
    let mut schema = match format.schema() {
        Value::Bool(true) => Value::Object(Default::default()),
        Value::Object(map) => Value::Object(map),
        other => {
            return Err(unsupported(format!(
                "a schema must be an object, not {other}"
            )))
        }
    };
    if schema.get("x-guidance").is_none() {
        JsonCompileOptions {
            whitespace_flexible: false,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            ..JsonCompileOptions::default()
        }
        .apply_to(&mut schema);
    }
    Ok(schema)
}

fn compile(factory: &ParserFactory, format: &OutputFormat) -> Result<Matcher, ProviderError> {
    let grammar = TopLevelGrammar::from_json_schema(prepared(format)?);
    let parser = factory.create_parser(grammar).map_err(unsupported)?;
    let matcher = Matcher::new(Ok(parser));
    match matcher.get_error() {
        Some(e) => Err(unsupported(e)),
        None => Ok(matcher),
    }
}

/// One loaded model's grammar compiler and its cache of compiled schemas.
pub struct Constraints {
    factory: ParserFactory,
    /// Most recently used last.
    compiled: Vec<(blake3::Hash, Matcher)>,
}

impl Constraints {
    /// Compiles grammars against `tokenizer`, for logits of `n_vocab`
    /// entries; `eos` are the tokens that end a turn.
    pub fn new(tokenizer: &Tokenizer, eos: &[u32], n_vocab: usize) -> Result<Self, ProviderError> {
        let env = vocab::token_env(tokenizer, eos, n_vocab).map_err(unsupported)?;
        let mut factory = ParserFactory::new_simple(&env).map_err(unsupported)?;
        factory.quiet();
        Ok(Constraints {
            factory,
            compiled: Vec::new(),
        })
    }

    /// A fresh grammar for one generation: compiled once per schema, then
    /// cloned from the cache.
    pub fn start(&mut self, format: &OutputFormat) -> Result<Grammar, ProviderError> {
        let key = blake3::hash(serde_json::to_string(format).unwrap_or_default().as_bytes());
        let matcher = match self.compiled.iter().position(|(k, _)| *k == key) {
            Some(at) => {
                let entry = self.compiled.remove(at);
                let fresh = entry.1.deep_clone();
                self.compiled.push(entry);
                fresh
            }
            None => {
                let matcher = compile(&self.factory, format)?;
                if self.compiled.len() == CACHED_GRAMMARS {
                    self.compiled.remove(0);
                }
                self.compiled.push((key, matcher.deep_clone()));
                matcher
            }
        };
        Ok(Grammar { matcher })
    }
}

/// The constraint of one generation in progress.
pub struct Grammar {
    matcher: Matcher,
}

fn grammar_failed(matcher: &Matcher, e: impl std::fmt::Display) -> ProviderError {
    let detail = matcher.get_error().unwrap_or_else(|| e.to_string());
    ProviderError::Inference(format!("constrained decoding failed: {detail}"))
}

impl Grammar {
    /// Makes every token the grammar forbids impossible to sample.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<(), ProviderError> {
        let allowed: SimpleVob = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| grammar_failed(&self.matcher, e))?;
        let known = allowed.len().min(logits.len());
        allowed.iter_unset_entries(|i| {
            if i < known {
                logits[i] = f32::NEG_INFINITY;
            }
        });
        // Rows past the vocabulary (padding) are never text.
        for l in logits.iter_mut().skip(known) {
            *l = f32::NEG_INFINITY;
        }
        Ok(())
    }

    /// Advances the grammar past a sampled (allowed) token.
    pub fn commit(&mut self, token: u32) -> Result<(), ProviderError> {
        self.matcher
            .consume_token(token)
            .map_err(|e| grammar_failed(&self.matcher, e))
    }

    /// The grammar is complete and allows nothing more.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// Checks that `format` compiles to a grammar, without a model: what a
/// skill's loader calls so a schema the engine cannot use is a load error.
pub fn check(format: &OutputFormat) -> Result<(), ProviderError> {
    static FACTORY: OnceLock<Result<ParserFactory, String>> = OnceLock::new();
    let factory = FACTORY
        .get_or_init(|| {
            let mut f = ParserFactory::new_simple(&bytes_env()).map_err(|e| e.to_string())?;
            f.quiet();
            Ok(f)
        })
        .as_ref()
        .map_err(unsupported)?;
    compile(factory, format).map(drop)
}

/// A vocabulary of the 256 bytes and an end token: enough to compile any
/// grammar.
fn bytes_env() -> TokEnv {
    struct Bytes(TokTrie);
    impl TokenizerEnv for Bytes {
        fn tok_trie(&self) -> &TokTrie {
            &self.0
        }
        fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
            self.0.greedy_tokenize(s)
        }
    }
    let mut words: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    words.push(vec![TokTrie::SPECIAL_TOKEN_MARKER, b'e', b'o', b's']);
    let trie = TokTrie::from(&TokRxInfo::new(words.len() as u32, 256), &words);
    Arc::new(Bytes(trie))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_llguidance_cannot_use_are_refused_with_the_reason() {
        let bad = OutputFormat::JsonSchema {
            schema: json!({"type": "object", "properties": {"a": {"type": "strnig"}}}),
        };
        let message = check(&bad).unwrap_err().to_string();
        assert!(
            message.contains("cannot be turned into a token constraint"),
            "{message}"
        );
        let good = OutputFormat::JsonSchema {
            schema: json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
        };
        check(&good).unwrap();
        check(&OutputFormat::Json).unwrap();
    }

    #[test]
    fn the_schema_features_the_docs_promise_compile() {
        for schema in [
            json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
            json!({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}}, {"required": ["a"]}]}),
            json!({"type": "string", "format": "date-time"}),
            json!({"type": "string", "format": "email"}),
            json!({"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}}),
            json!({"const": "fixed"}),
            json!({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
            json!({"$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"}),
        ] {
            let format = OutputFormat::JsonSchema {
                schema: schema.clone(),
            };
            assert!(
                check(&format).is_ok(),
                "{schema}: {:?}",
                check(&format).err()
            );
        }
    }
}
