//! Incremental detokenisation: text pieces as tokens arrive, never cutting
//! a multi-byte character in half.

use std::sync::Arc;

use tokenizers::Tokenizer;

/// Turns a growing token sequence into text deltas.
pub struct Detokenizer {
    tokenizer: Arc<Tokenizer>,
    tokens: Vec<u32>,
    /// Tokens before this index are fully emitted.
    prev: usize,
    /// Text of `tokens[prev..current]` already emitted.
    current: usize,
}

impl Detokenizer {
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        Detokenizer {
            tokenizer,
            tokens: Vec::new(),
            prev: 0,
            current: 0,
        }
    }

    fn decode(&self, tokens: &[u32]) -> String {
        self.tokenizer.decode(tokens, true).unwrap_or_default()
    }

    /// Adds a token; returns the new text it completes, if any.
    pub fn push(&mut self, token: u32) -> Option<String> {
        let before = self.decode(&self.tokens[self.prev..self.current]);
        self.tokens.push(token);
        let after = self.decode(&self.tokens[self.prev..]);
        // A trailing U+FFFD means a character is still incomplete.
        if after.len() > before.len() && !after.ends_with('\u{fffd}') {
            let delta = after.get(before.len()..).unwrap_or_default().to_owned();
            self.prev = self.current;
            self.current = self.tokens.len();
            Some(delta)
        } else {
            None
        }
    }

    /// Whatever is still held back at the end.
    pub fn finish(&mut self) -> Option<String> {
        let before = self.decode(&self.tokens[self.prev..self.current]);
        let after = self.decode(&self.tokens[self.prev..]);
        (after.len() > before.len())
            .then(|| after.get(before.len()..).unwrap_or_default().to_owned())
    }
}

/// Holds back text that might be the start of a stop string.
pub struct StopFilter {
    stops: Vec<String>,
    text: String,
    emitted: usize,
}

impl StopFilter {
    pub fn new(stops: Vec<String>) -> Self {
        StopFilter {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            text: String::new(),
            emitted: 0,
        }
    }

    /// Adds generated text; returns what is safe to show and whether a
    /// stop string was reached (generation should end).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.text.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| {
                self.text[self.emitted..]
                    .find(s.as_str())
                    .map(|i| self.emitted + i)
            })
            .min()
        {
            let out = self.text[self.emitted..at].to_owned();
            self.text.truncate(at);
            self.emitted = at;
            return (out, true);
        }
        // Keep back the longest suffix that is a prefix of some stop string.
        let hold = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.text[self.emitted..], s))
            .max()
            .unwrap_or(0);
        let safe = self.text.len() - hold;
        let out = self.text[self.emitted..safe].to_owned();
        self.emitted = safe;
        (out, false)
    }

    /// The held-back tail, at the end of generation.
    pub fn finish(&mut self) -> String {
        let out = self.text[self.emitted..].to_owned();
        self.emitted = self.text.len();
        out
    }

    /// All text that counts as the answer.
    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.text
    }
}

fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop.is_char_boundary(n)
                && text.ends_with(&stop[..n])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::bpe::{Vocab, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;

    /// A byte-level tokenizer with no merges: one token per byte, so every
    /// multi-byte character spans several tokens.
    fn byte_tokenizer() -> Tokenizer {
        let vocab: Vocab = ByteLevel::alphabet()
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, vec![])
            .build()
            .unwrap();
        let mut t = Tokenizer::new(bpe);
        t.with_pre_tokenizer(Some(ByteLevel::new(false, true, false)));
        t.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
        t
    }

    #[test]
    fn multi_byte_characters_are_never_split_across_pieces() {
        let tokenizer = byte_tokenizer();
        let text = "héllo wörld 🎉 ok";
        let ids = tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(ids.len(), text.len(), "one token per byte");
        let mut detok = Detokenizer::new(Arc::new(tokenizer.clone()));
        let mut pieces = Vec::new();
        for id in ids {
            pieces.extend(detok.push(id));
        }
        pieces.extend(detok.finish());
        for p in &pieces {
            assert!(!p.contains('\u{fffd}'), "{p:?} in {pieces:?}");
        }
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn stop_strings_end_generation_and_are_not_shown() {
        let mut f = StopFilter::new(vec!["<END>".into()]);
        assert_eq!(f.push("Hello <E"), ("Hello ".into(), false));
        assert_eq!(f.push("ND> more"), ("".into(), true));
        assert_eq!(f.text(), "Hello ");
    }

    #[test]
    fn held_back_text_is_released_when_it_is_not_a_stop() {
        let mut f = StopFilter::new(vec!["<END>".into()]);
        assert_eq!(f.push("a <"), ("a ".into(), false));
        assert_eq!(f.push("b"), ("<b".into(), false));
        assert_eq!(f.push(" <EN"), (" ".into(), false));
        assert_eq!(f.finish(), "<EN");
    }
}
