//! The JSON half of [`super::lines`]: walks valid JSON text along a field
//! path and returns the line of the deepest key or item reached.

use super::field_path::Seg;

/// Walks valid JSON text along `segs`; returns the line of the deepest
/// step reached.
pub fn locate(text: &str, segs: &[Seg]) -> Option<usize> {
    let mut walker = JsonWalker {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut found = None;
    for seg in segs {
        walker.skip_ws();
        let line = match seg {
            Seg::Key(key) => walker.enter_key(key),
            Seg::Index(i) => walker.enter_index(*i),
        };
        match line {
            Some(line) => found = Some(line),
            None => break,
        }
    }
    found
}

struct JsonWalker<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl JsonWalker<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.pos += 1;
    }

    fn skip_ws(&mut self) {
        while matches!(
            self.peek(),
            Some(b' ' | b'\n' | b'\r' | b'\t' | b',' | b':')
        ) {
            self.bump();
        }
    }

    /// Reads a string at the cursor, returning its raw contents.
    fn string(&mut self) -> String {
        let mut out = Vec::new();
        self.bump(); // opening quote
        while let Some(b) = self.peek() {
            self.bump();
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(e) = self.peek() {
                        out.push(e);
                        self.bump();
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Skips the value at the cursor.
    fn skip_value(&mut self) {
        self.skip_ws();
        match self.peek() {
            Some(b'"') => {
                self.string();
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                while let Some(b) = self.peek() {
                    match b {
                        b'"' => {
                            self.string();
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.bump();
                                return;
                            }
                        }
                        _ => {}
                    }
                    self.bump();
                }
            }
            _ => {
                while !matches!(self.peek(), None | Some(b',' | b'}' | b']')) {
                    self.bump();
                }
            }
        }
    }

    /// Enters the value of `key` of the object at the cursor; the key's line.
    fn enter_key(&mut self, key: &str) -> Option<usize> {
        if self.peek() != Some(b'{') {
            return None;
        }
        self.bump();
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return None;
            }
            let line = self.line;
            let k = self.string();
            self.skip_ws();
            if k == key {
                return Some(line);
            }
            self.skip_value();
        }
    }

    /// Enters item `index` of the array at the cursor; the item's line.
    fn enter_index(&mut self, index: usize) -> Option<usize> {
        if self.peek() != Some(b'[') {
            return None;
        }
        self.bump();
        for _ in 0..index {
            self.skip_ws();
            if matches!(self.peek(), None | Some(b']')) {
                return None;
            }
            self.skip_value();
        }
        self.skip_ws();
        (!matches!(self.peek(), None | Some(b']'))).then_some(self.line)
    }
}
