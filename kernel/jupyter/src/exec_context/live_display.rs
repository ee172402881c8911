//! A Markdown display that grows in place as text streams in.
//!
//! The first piece publishes `display_data` with a `display_id`; later
//! pieces publish `update_display_data` for that id at most every
//! [`UPDATE_INTERVAL`], and [`LiveDisplay::finish`] sends the last update
//! if anything is still unpublished. Prompt cells and skill runs share it,
//! so both look the same in a notebook and in `skillctl`.

use std::time::{Duration, Instant};

use skillkernel_protocol::content::DisplayData;

use super::output::{markdown_bundle, Output};

/// Shortest time between two in-place updates of a streaming answer.
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(50);

/// The streamed text and what of it has been published.
pub struct LiveDisplay {
    display_id: String,
    text: String,
    shown: bool,
    /// Length of `text` as last published.
    sent: usize,
    last_update: Instant,
}

impl LiveDisplay {
    pub fn new(display_id: String) -> Self {
        LiveDisplay {
            display_id,
            text: String::new(),
            shown: false,
            sent: 0,
            last_update: Instant::now(),
        }
    }

    /// Everything streamed so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn into_text(self) -> String {
        self.text
    }

    /// Appends `piece`, publishing when the display is new or the last
    /// update is old enough.
    pub async fn push(&mut self, out: &mut Output<'_>, piece: &str) {
        self.text.push_str(piece);
        if !self.shown {
            out.display(self.bundle()).await;
            self.shown = true;
        } else if self.last_update.elapsed() >= UPDATE_INTERVAL {
            out.update_display(self.bundle()).await;
        } else {
            return;
        }
        self.sent = self.text.len();
        self.last_update = Instant::now();
    }

    /// Publishes what the interval held back.
    pub async fn finish(&mut self, out: &mut Output<'_>) {
        if self.shown && self.sent < self.text.len() {
            out.update_display(self.bundle()).await;
            self.sent = self.text.len();
        }
    }

    fn bundle(&self) -> DisplayData {
        DisplayData::new(markdown_bundle(&self.text)).with_display_id(&self.display_id)
    }
}
