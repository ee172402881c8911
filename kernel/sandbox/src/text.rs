//! Turning a program's output bytes into text: UTF-8 split across reads
//! is carried, not broken, and a bounded tail of stderr is kept to explain
//! failures.

/// Bytes of an incomplete UTF-8 sequence, carried to the next read.
#[derive(Debug, Default)]
pub struct Utf8Carry(Vec<u8>);

impl Utf8Carry {
    /// Decodes `bytes` after what was carried, keeping an incomplete
    /// sequence at the end for the next call.
    pub fn decode(&mut self, bytes: &[u8]) -> String {
        let carry = &mut self.0;
        carry.extend_from_slice(bytes);
        let valid_up_to = match std::str::from_utf8(carry) {
            Ok(_) => carry.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                // Truly invalid bytes: replace them rather than stall.
                let text = String::from_utf8_lossy(carry).into_owned();
                carry.clear();
                return text;
            }
        };
        let rest = carry.split_off(valid_up_to);
        String::from_utf8(std::mem::replace(carry, rest)).unwrap_or_default()
    }

    /// Whatever is left at the end of the stream, replaced if invalid.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// The last `limit` bytes (about) of a text, cut at a character boundary.
#[derive(Debug)]
pub struct Tail {
    text: String,
    limit: usize,
}

impl Tail {
    pub fn new(limit: usize) -> Self {
        Tail {
            text: String::new(),
            limit,
        }
    }

    pub fn push(&mut self, more: &str) {
        self.text.push_str(more);
        if self.text.len() > self.limit * 2 {
            let mut cut = self.text.len() - self.limit;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
        }
    }

    pub fn text(&self) -> String {
        let mut cut = self.text.len().saturating_sub(self.limit);
        while !self.text.is_char_boundary(cut) {
            cut += 1;
        }
        self.text[cut..].to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_utf8_sequences_are_carried_not_broken() {
        let mut carry = Utf8Carry::default();
        let bytes = "né".as_bytes();
        assert_eq!(carry.decode(&bytes[..2]), "n");
        assert_eq!(carry.decode(&bytes[2..]), "é");
        assert_eq!(carry.finish(), "");
    }

    #[test]
    fn the_tail_keeps_the_last_bytes_at_a_character_boundary() {
        let mut tail = Tail::new(4);
        tail.push("abcdé");
        tail.push("fgh");
        assert_eq!(tail.text(), "fgh");
        tail.push("ééé");
        assert_eq!(tail.text(), "éé");
    }
}
