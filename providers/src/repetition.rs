//! Stops an answer caught in a loop.
//!
//! Small models at temperature 0 fall into loops on open questions (the
//! default model, asked "What is the capital of France?", went on with
//! "fashion sports fashion sports …"; asked about the ocean, it said one
//! paragraph over and over to its token limit). [`guard`] watches the text
//! as it streams; when its tail is one unit said again and again — a
//! phrase four times, a sentence three times, a passage of 120 bytes or
//! more twice, over at least [`MIN_SPAN`] bytes — it cancels the
//! generation and ends the stream with `finish_reason` `"repetition"`, the
//! text up to there kept. Digits are left out of the comparison, so a
//! numbered list that starts over (`5. Tuna …`, `7. Tuna …`) is the loop
//! it is. Units without a letter (`---`, `| --- `, a row of `=`) are
//! layout, not loops, and never stop an answer.
//!
//! Must never hold more than [`WINDOW`] bytes of the answer, nor look
//! further back than that.

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{StreamEvent, TokenStream};

/// The `finish_reason` of an answer stopped in a loop.
pub const REPETITION: &str = "repetition";
/// A loop covers at least this many bytes.
pub const MIN_SPAN: usize = 100;
/// The longest unit looked for, in bytes.
pub const MAX_UNIT: usize = 1024;
/// How much of the answer's tail is kept to look at.
pub const WINDOW: usize = 2 * MAX_UNIT;

/// How many times a unit of `len` bytes must be said in a row to be a
/// loop: a long passage said twice is one, a short phrase needs more.
pub fn repeats_needed(len: usize) -> usize {
    match len {
        120.. => 2,
        30.. => 3,
        _ => 4,
    }
}

/// The unit (its length in bytes) the tail of `text` repeats, when it
/// repeats enough to be a loop. `text` is compared as given: [`guard`]
/// passes it with the digits taken out.
pub fn looping(text: &[u8]) -> Option<usize> {
    let n = text.len();
    for unit in 1..=MAX_UNIT.min(n / 2) {
        // How far back, from the end, the text equals itself `unit` earlier.
        let mut run = 0;
        while run + unit < n && text[n - 1 - run] == text[n - 1 - run - unit] {
            run += 1;
        }
        let span = run + unit;
        if span >= MIN_SPAN
            && span / unit >= repeats_needed(unit)
            && text[n - unit..].iter().any(u8::is_ascii_alphabetic)
        {
            return Some(unit);
        }
    }
    None
}

/// `piece` as the loop check sees it: without digits.
fn comparable(piece: &str) -> impl Iterator<Item = u8> + '_ {
    piece.bytes().filter(|b| !b.is_ascii_digit())
}

/// Passes `inner` through until its text loops; then cancels it with
/// `cancel` (the token its provider watches), drops what it still sends
/// and ends with its statistics under `finish_reason` `"repetition"`.
pub fn guard(inner: TokenStream, cancel: CancellationToken) -> TokenStream {
    let state = Guard {
        inner,
        cancel,
        tail: Vec::new(),
        stopped: false,
        ended: false,
    };
    Box::pin(futures::stream::unfold(state, |mut g| async move {
        let event = g.next().await?;
        Some((event, g))
    }))
}

struct Guard {
    inner: TokenStream,
    cancel: CancellationToken,
    tail: Vec<u8>,
    stopped: bool,
    ended: bool,
}

impl Guard {
    async fn next(&mut self) -> Option<Result<StreamEvent, crate::ProviderError>> {
        if self.ended {
            return None;
        }
        loop {
            let event = self.inner.next().await?;
            match event {
                Ok(StreamEvent::Text(piece)) if self.stopped => {
                    // Decoded before the cancel was seen: not shown.
                    drop(piece);
                }
                Ok(StreamEvent::Text(piece)) => {
                    self.tail.extend(comparable(&piece));
                    if self.tail.len() > WINDOW {
                        self.tail.drain(..self.tail.len() - WINDOW);
                    }
                    if let Some(unit) = looping(&self.tail) {
                        tracing::info!(unit_bytes = unit, "the answer is looping; stopped");
                        self.stopped = true;
                        self.cancel.cancel();
                    }
                    return Some(Ok(StreamEvent::Text(piece)));
                }
                Ok(StreamEvent::ToolCall(call)) => return Some(Ok(StreamEvent::ToolCall(call))),
                Ok(StreamEvent::Done(mut stats)) => {
                    self.ended = true;
                    if self.stopped {
                        stats.finish_reason = REPETITION.into();
                    }
                    return Some(Ok(StreamEvent::Done(stats)));
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
