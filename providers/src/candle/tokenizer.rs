//! Tokenizers: from a `tokenizer.json` beside the model, or rebuilt from
//! the GGUF's own `tokenizer.ggml.*` metadata (GPT-2 style byte-level BPE).

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf::{invalid, GgufFile};
use crate::ProviderError;

/// GGUF token type of special tokens (`<|im_end|>` …).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// GGUF token type of user-defined added tokens.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The split regex of Llama 3 and Qwen 2 style tokenizers.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Loads the tokenizer for `gguf`: `tokenizer.json` next to the file wins.
pub fn load(gguf: &GgufFile) -> Result<Tokenizer, ProviderError> {
    let beside = gguf.path.with_file_name("tokenizer.json");
    if beside.exists() {
        return Tokenizer::from_file(&beside)
            .map_err(|e| invalid(&beside, format!("unreadable tokenizer.json: {e}")));
    }
    from_gguf(gguf)
}

fn strings(gguf: &GgufFile, key: &str) -> Result<Vec<String>, ProviderError> {
    let values = gguf
        .get(key)
        .and_then(|v| v.to_vec().ok())
        .ok_or_else(|| missing(&gguf.path, key))?;
    values
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&gguf.path, format!("{key}: {e}")))
}

fn missing(path: &Path, key: &str) -> ProviderError {
    invalid(
        path,
        format!("it has no `{key}`; put the model's tokenizer.json beside the file"),
    )
}

fn token_types(gguf: &GgufFile) -> Vec<i32> {
    gguf.get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().map(|t| t.to_i32().unwrap_or(1)).collect())
        .unwrap_or_default()
}

fn split(pattern: &str) -> Result<PreTokenizerWrapper, String> {
    Split::new(
        SplitPattern::Regex(pattern.to_owned()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map(PreTokenizerWrapper::Split)
    .map_err(|e| e.to_string())
}

/// The pre-tokenizer llama.cpp's `tokenizer.ggml.pre` names.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, String> {
    let byte_level_plain = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false));
    let byte_level_gpt2 = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
    Ok(match pre {
        // SmolLM: every digit alone, then the GPT-2 split.
        "smollm" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level_gpt2,
        ])),
        "llama-bpe" | "llama3" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(LLAMA3_SPLIT)?,
            byte_level_plain,
        ])),
        "qwen2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(QWEN2_SPLIT)?,
            byte_level_plain,
        ])),
        // "gpt2", "default" and anything unknown: GPT-2's own regex.
        _ => byte_level_gpt2,
    })
}

/// Rebuilds a byte-level BPE tokenizer from `tokenizer.ggml.*`.
pub fn from_gguf(gguf: &GgufFile) -> Result<Tokenizer, ProviderError> {
    let path = &gguf.path;
    let model = gguf
        .get_str("tokenizer.ggml.model")
        .ok_or_else(|| missing(path, "tokenizer.ggml.model"))?;
    if model != "gpt2" {
        return Err(invalid(
            path,
            format!("its tokenizer type `{model}` cannot be rebuilt from GGUF; put the model's tokenizer.json beside the file"),
        ));
    }
    let tokens = strings(gguf, "tokenizer.ggml.tokens")?;
    let merges = strings(gguf, "tokenizer.ggml.merges")?;
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| invalid(path, format!("its BPE vocabulary is inconsistent: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let pre = gguf.get_str("tokenizer.ggml.pre").unwrap_or("default");
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(pre).map_err(|e| invalid(path, e))?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    let special: Vec<AddedToken> = token_types(gguf)
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
        .filter_map(|(i, t)| {
            tokens
                .get(i)
                .map(|tok| AddedToken::from(tok.clone(), *t == TOKEN_TYPE_CONTROL))
        })
        .collect();
    tokenizer
        .add_special_tokens(special)
        .map_err(|e| invalid(path, format!("its special tokens are invalid: {e}")))?;
    Ok(tokenizer)
}

/// A token id from the metadata (`tokenizer.ggml.eos_token_id` …).
pub fn token_id(gguf: &GgufFile, key: &str) -> Option<u32> {
    gguf.get(key).and_then(|v: &Value| v.to_u32().ok())
}
