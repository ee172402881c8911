//! A model's vocabulary as bytes, the form llguidance's token trie needs.
//!
//! Tokenizers store tokens as strings in one of two encodings: GPT-2 style
//! byte-level BPE (each byte mapped to a printable character; SmolLM, Llama
//! 3, Qwen) or SentencePiece with byte fallback (`▁` for a space, `<0x0A>`
//! for raw bytes; Llama 2, Mistral). Special tokens (`<|im_end|>` …) are
//! marked so the grammar can never produce them as text.

use std::collections::HashMap;
use std::sync::Arc;

use tokenizers::{DecoderWrapper, Tokenizer};
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// How a tokenizer writes bytes into token strings.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    ByteLevel,
    ByteFallback,
}

fn encoding(decoder: Option<&DecoderWrapper>) -> Option<Encoding> {
    match decoder? {
        DecoderWrapper::ByteLevel(_) => Some(Encoding::ByteLevel),
        DecoderWrapper::ByteFallback(_) => Some(Encoding::ByteFallback),
        DecoderWrapper::Sequence(seq) => seq.get_decoders().iter().find_map(|d| encoding(Some(d))),
        _ => None,
    }
}

/// GPT-2's byte-to-character table, reversed.
fn byte_level_chars() -> HashMap<char, u8> {
    let printable = |c: char| matches!(c, '!'..='~' | '\u{A1}'..='\u{AC}' | '\u{AE}'..='\u{FF}');
    let mut next = 0x100u32;
    let mut map = HashMap::with_capacity(256);
    for byte in 0..=255u8 {
        let c = byte as char;
        if printable(c) {
            map.insert(c, byte);
        } else {
            // Every value 0x100..0x144 is a valid char.
            if let Some(shifted) = char::from_u32(next) {
                map.insert(shifted, byte);
            }
            next += 1;
        }
    }
    map
}

/// The tokenizer environment llguidance masks tokens with.
struct Vocab {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Vocab {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // The trie's greedy split is the fallback for text the tokenizer
        // rejects (it never should: the input is valid UTF-8 from a grammar).
        let text = String::from_utf8_lossy(s);
        match self.tokenizer.encode(text.as_ref(), false) {
            Ok(encoding) => encoding.get_ids().to_vec(),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Builds the token environment of `tokenizer` for a model whose logits
/// have `n_vocab` entries (padding rows past the tokenizer's vocabulary
/// become special tokens nothing can produce). `eos` lists the tokens that
/// end a turn; the first is the grammar's end token.
pub fn token_env(tokenizer: &Tokenizer, eos: &[u32], n_vocab: usize) -> Result<TokEnv, String> {
    let kind = encoding(tokenizer.get_decoder()).ok_or_else(|| {
        "the tokenizer's decoder is neither byte-level nor byte-fallback, so its tokens \
         cannot be matched against a grammar"
            .to_owned()
    })?;
    let size = (tokenizer.get_vocab_size(true)).max(n_vocab);
    let specials: std::collections::HashSet<u32> = tokenizer
        .get_added_tokens_decoder()
        .into_iter()
        .filter(|(_, t)| t.special || (t.content.starts_with('<') && t.content.ends_with('>')))
        .map(|(id, _)| id)
        .collect();
    let chars = byte_level_chars();
    let mut words: Vec<Vec<u8>> = Vec::with_capacity(size);
    for id in 0..size as u32 {
        let special = |name: &str| {
            let mut bytes = name.as_bytes().to_vec();
            bytes.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
            bytes
        };
        let word = match tokenizer.id_to_token(id) {
            None => special(&format!("<[{id}]>")),
            Some(name) if specials.contains(&id) => special(&name),
            Some(name) => match kind {
                Encoding::ByteLevel => name
                    .chars()
                    .map(|c| chars.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    // A token outside the byte alphabet cannot be text.
                    .unwrap_or_else(|| special(&name)),
                Encoding::ByteFallback => byte_fallback(&name),
            },
        };
        words.push(word);
    }
    let first_eos = eos
        .first()
        .copied()
        .ok_or("the model names no end-of-turn token")?;
    let info = TokRxInfo::new(size as u32, first_eos);
    let mut trie = TokTrie::from(&info, &words);
    if eos.len() > 1 {
        trie = trie.with_eos_tokens(eos);
    }
    Ok(Arc::new(Vocab {
        trie,
        tokenizer: tokenizer.clone(),
    }))
}

/// `<0x0A>` is the byte 0x0A; `▁` is a space.
fn byte_fallback(name: &str) -> Vec<u8> {
    if name.len() == 6 && name.starts_with("<0x") && name.ends_with('>') {
        if let Ok(byte) = u8::from_str_radix(&name[3..5], 16) {
            return vec![byte];
        }
    }
    name.replace('\u{2581}', " ").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_covers_every_byte_once() {
        let map = byte_level_chars();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'a'], b'a');
    }

    #[test]
    fn byte_fallback_tokens_become_their_bytes() {
        assert_eq!(byte_fallback("<0x0A>"), b"\n");
        assert_eq!(byte_fallback("\u{2581}the"), b" the");
    }
}
