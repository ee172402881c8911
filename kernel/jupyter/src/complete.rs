//! `complete_request` and `is_complete_request`.
//!
//! Cursor positions in the protocol count Unicode code points; everything
//! here converts at the edges and works in byte offsets inside.

use std::collections::BTreeSet;

use serde_json::Map;
use skillkernel_protocol::content::{
    CompleteReply, IsCompleteReply, IsCompleteStatus, ReplyStatus,
};

use crate::cell::{self, Cell, Line, ParseError};
use crate::complete_skill;
use crate::magics::{self, help::help_subjects, CELL_MAGICS, LINE_MAGICS};
use crate::session::Shared;

/// Byte offset of code point `pos` (clamped to the end).
pub fn byte_offset(code: &str, pos: usize) -> usize {
    code.char_indices().nth(pos).map_or(code.len(), |(i, _)| i)
}

/// Code point count up to byte offset `byte`.
pub fn char_offset(code: &str, byte: usize) -> usize {
    code[..byte].chars().count()
}

/// Completes the word before `cursor_pos`.
pub fn complete(shared: &Shared, code: &str, cursor_pos: usize) -> CompleteReply {
    let cursor = byte_offset(code, cursor_pos);
    let line_start = code[..cursor].rfind('\n').map_or(0, |i| i + 1);
    let line = &code[line_start..cursor];
    let word_start = line.rfind(char::is_whitespace).map_or(0, |i| {
        i + line[i..].chars().next().map_or(1, char::len_utf8)
    });
    let word = &line[word_start..];
    let at_cell_start = code[..line_start].trim().is_empty();
    let variables =
        || -> Vec<String> { shared.with_state(|s| s.variables.keys().cloned().collect()) };

    let mut start = line_start + word_start;
    let candidates: Vec<String> = if word_start == 0 && word.starts_with("%%") && at_cell_start {
        CELL_MAGICS
            .iter()
            .map(|m| format!("%%{}", m.name))
            .collect()
    } else if word_start == 0 && word.starts_with('%') {
        let mut v: Vec<String> = LINE_MAGICS.iter().map(|m| format!("%{}", m.name)).collect();
        if at_cell_start {
            v.extend(CELL_MAGICS.iter().map(|m| format!("%%{}", m.name)));
        }
        v
    } else if word_start == 0 && word.starts_with('!') {
        executables(&word[1..])
            .into_iter()
            .map(|e| format!("!{e}"))
            .collect()
    } else if let Some(position) = complete_skill::position(line, word_start, at_cell_start) {
        // Skill names, parameters or values: these alone, not the
        // subcommands the magic table offers at every position.
        let (offset, found) = shared
            .skills()
            .map(|skills| complete_skill::candidates(&skills.registry, &position, word))
            .unwrap_or_default();
        start += offset;
        found
    } else if let Some(brace) = word.rfind("{{") {
        // `{{var` inside prompt text.
        start += brace + 2;
        variables()
    } else {
        argument_candidates(line, word_start, at_cell_start, variables)
    };
    let prefix = &code[start..cursor];
    let matches: BTreeSet<String> = candidates
        .into_iter()
        .filter(|c| c.starts_with(prefix))
        .collect();
    CompleteReply {
        status: ReplyStatus::Ok,
        matches: matches.into_iter().collect(),
        cursor_start: char_offset(code, start),
        cursor_end: cursor_pos.min(code.chars().count()),
        metadata: Map::new(),
    }
}

/// Candidates for a word after a magic name.
fn argument_candidates(
    line: &str,
    word_start: usize,
    at_cell_start: bool,
    variables: impl Fn() -> Vec<String>,
) -> Vec<String> {
    let head = line.split_whitespace().next().unwrap_or("");
    let spec = if let Some(name) = head.strip_prefix("%%") {
        if !at_cell_start {
            return Vec::new();
        }
        magics::find_cell(name)
    } else if let Some(name) = head.strip_prefix('%') {
        magics::find_line(name)
    } else {
        None
    };
    let Some(spec) = spec else {
        return Vec::new();
    };
    let is_first_arg = line[..word_start].split_whitespace().count() == 1;
    let mut out: Vec<String> = spec.subcommands.iter().map(|s| (*s).to_owned()).collect();
    if is_first_arg {
        if spec.name == "help" {
            out.extend(help_subjects());
        }
        if spec.takes_variable {
            out.extend(variables());
        }
    }
    out
}

/// Executables on `PATH` starting with `prefix` (at most 200).
fn executables(prefix: &str) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = BTreeSet::new();
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) {
                continue;
            }
            let executable = entry
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if executable {
                found.insert(name);
            }
            if found.len() >= 200 {
                return found.into_iter().collect();
            }
        }
    }
    found.into_iter().collect()
}

/// Whether a console should run `code` now or read another line.
pub fn is_complete(code: &str) -> IsCompleteReply {
    let incomplete = || IsCompleteReply {
        status: IsCompleteStatus::Incomplete,
        indent: Some(String::new()),
    };
    let reply = |status| IsCompleteReply {
        status,
        indent: None,
    };
    if code.trim_end().ends_with('\\') {
        return incomplete();
    }
    match cell::parse(code) {
        Ok(Cell::CellMagic(m)) => {
            if magics::find_cell(&m.name).is_none() {
                reply(IsCompleteStatus::Invalid)
            } else if m.body.trim().is_empty() {
                // `%%sh` alone: the body is still to come.
                incomplete()
            } else {
                // A cell magic body ends at an empty line, as in IPython:
                // the console submits once the last line is blank.
                let last_line = code.rsplit('\n').next().unwrap_or("");
                if code.contains('\n') && last_line.trim().is_empty() {
                    reply(IsCompleteStatus::Complete)
                } else {
                    incomplete()
                }
            }
        }
        Ok(Cell::Lines(lines)) => {
            let all_known = lines.iter().all(|l| match l {
                Line::Magic { name, .. } => magics::find_line(name).is_some(),
                Line::Command(_) => true,
            });
            reply(if all_known {
                IsCompleteStatus::Complete
            } else {
                IsCompleteStatus::Invalid
            })
        }
        Ok(Cell::Empty | Cell::Prompt(_) | Cell::Exit) => reply(IsCompleteStatus::Complete),
        Err(ParseError::DanglingContinuation) => incomplete(),
        Err(_) => reply(IsCompleteStatus::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_point_offsets_round_trip() {
        let code = "héllo %s";
        let b = byte_offset(code, 7);
        assert_eq!(&code[b..], "s");
        assert_eq!(char_offset(code, b), 7);
        assert_eq!(byte_offset(code, 100), code.len());
    }

    #[test]
    fn is_complete_statuses() {
        use IsCompleteStatus::*;
        assert_eq!(is_complete("%set x = 1").status, Complete);
        assert_eq!(is_complete("What is Rust?").status, Complete);
        assert_eq!(is_complete("%%sh").status, Incomplete);
        assert_eq!(is_complete("%%sh\necho hi").status, Incomplete);
        assert_eq!(is_complete("%%sh\necho hi\n\n").status, Complete);
        assert_eq!(is_complete("%%sh\necho hi\n").status, Complete);
        assert_eq!(is_complete("!echo a \\").status, Incomplete);
        assert_eq!(is_complete("%nosuchmagic").status, Invalid);
        assert_eq!(is_complete("%%nosuch\nbody").status, Invalid);
        assert_eq!(is_complete("%set x = 1\nplain prose").status, Invalid);
    }
}
