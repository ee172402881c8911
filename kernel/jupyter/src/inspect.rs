//! `inspect_request`: help on the magic, topic or variable at the cursor.

use serde_json::Map;
use skillkernel_protocol::content::{InspectReply, ReplyStatus};

use crate::complete::byte_offset;
use crate::complete_skill;
use crate::exec_context::output::markdown_bundle;
use crate::magics::{self, help};
use crate::session::Shared;

/// The word around byte offset `cursor`, split on whitespace, and the
/// byte offset where it starts.
fn word_at(code: &str, cursor: usize) -> (usize, &str) {
    let start = code[..cursor].rfind(char::is_whitespace).map_or(0, |i| {
        i + code[i..].chars().next().map_or(1, char::len_utf8)
    });
    let end = code[cursor..]
        .find(char::is_whitespace)
        .map_or(code.len(), |i| cursor + i);
    (start, &code[start..end])
}

/// The `%skill info` page of the skill, or the help of the parameter,
/// named by the word at `start` when it sits in a skill command.
fn skill_page(shared: &Shared, code: &str, start: usize, word: &str) -> Option<String> {
    let line_start = code[..start].rfind('\n').map_or(0, |i| i + 1);
    let first_line = code[..line_start].trim().is_empty();
    let position = complete_skill::position(&code[line_start..], start - line_start, first_line)?;
    let skills = shared.skills()?;
    complete_skill::inspect(&skills, &position, word)
}

/// Answers an inspection at `cursor_pos` (code points).
pub fn inspect(shared: &Shared, code: &str, cursor_pos: usize) -> InspectReply {
    let cursor = byte_offset(code, cursor_pos);
    let (start, raw_word) = word_at(code, cursor);
    let word = raw_word.trim_start_matches('!');
    let word = word.trim_matches(|c: char| c == '{' || c == '}');
    let page = if let Some(page) = skill_page(shared, code, start, raw_word) {
        Some(page)
    } else if let Some(name) = word.strip_prefix("%%") {
        magics::find_cell(name).map(|m| help::magic_markdown("%%", m))
    } else if let Some(name) = word.strip_prefix('%') {
        magics::find_line(name).map(|m| help::magic_markdown("%", m))
    } else if let Some(value) = shared.variable(word) {
        Some(format!(
            "**{word}** — session variable\n\n```\n{}\n```\n",
            crate::exec_context::values::display_value(&value)
        ))
    } else if !word.is_empty() {
        help::TOPICS
            .iter()
            .find(|(n, _, _)| *n == word)
            .and_then(|(n, _, _)| help::page_for(n))
    } else {
        None
    };
    InspectReply {
        status: ReplyStatus::Ok,
        found: page.is_some(),
        data: page.as_deref().map(markdown_bundle).unwrap_or_default(),
        metadata: Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::word_at;

    #[test]
    fn word_at_finds_the_token_under_the_cursor() {
        assert_eq!(word_at("%set x = 1", 2), (0, "%set"));
        assert_eq!(word_at("%set", 4), (0, "%set"));
        assert_eq!(word_at("a %help b", 5), (2, "%help"));
    }
}
