//! The cell language: what a notebook user types.
//!
//! A cell is exactly one of
//!
//! * a **prompt** — plain text, a chat turn with the current model;
//! * **line magics and commands** — every non-blank line is `%magic args`
//!   or `!command` (lines starting with `#` are comments, a trailing `\`
//!   continues a line);
//! * a **cell magic** — `%%name args` on the first line, the rest is its
//!   body.
//!
//! Mixing prose with magic lines is a syntax error rather than a guess, so
//! a prompt is never run as a command by accident.

use thiserror::Error;

/// A parsed cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Only whitespace (or comments).
    Empty,
    /// Plain text for the model.
    Prompt(String),
    /// `%magic` and `!command` lines, run in order.
    Lines(Vec<Line>),
    /// `%%name args` plus a body.
    CellMagic(CellMagic),
    /// `exit` or `quit` alone: the front end should close (the spec's
    /// `ask_exit` payload), as IPython kernels answer it.
    Exit,
}

/// One line of a [`Cell::Lines`] cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Magic { name: String, args: String },
    Command(String),
}

/// A `%%name args` cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellMagic {
    pub name: String,
    pub args: String,
    pub body: String,
}

/// Why a cell does not parse.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error(
        "line {line} is plain text in a cell of magics and commands; put prompts in a cell \
         of their own, or use `%%prompt`"
    )]
    Mixed { line: usize },
    #[error("line {line}: `%` must be followed by a magic name, e.g. `%help`")]
    EmptyMagicName { line: usize },
    #[error("line {line}: `!` must be followed by a command, e.g. `!ls`")]
    EmptyCommand { line: usize },
    #[error("the last line ends with `\\` but no line follows it")]
    DanglingContinuation,
    #[error("`%%` must be followed by a cell magic name, e.g. `%%sh`")]
    EmptyCellMagicName,
}

/// Characters allowed in magic names.
pub fn is_magic_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Splits `name rest` at the first character that cannot be in a name.
fn split_name(s: &str) -> (&str, &str) {
    let end = s
        .char_indices()
        .find(|(_, c)| !is_magic_name_char(*c))
        .map_or(s.len(), |(i, _)| i);
    (&s[..end], s[end..].trim())
}

/// Parses a cell.
pub fn parse(code: &str) -> Result<Cell, ParseError> {
    let trimmed = code.trim();
    if trimmed.is_empty() {
        return Ok(Cell::Empty);
    }
    if matches!(trimmed, "exit" | "quit" | "exit()" | "quit()") {
        return Ok(Cell::Exit);
    }
    if let Some(rest) = code.trim_start().strip_prefix("%%") {
        let (first, body) = match rest.split_once('\n') {
            Some((first, body)) => (first, body),
            None => (rest, ""),
        };
        let (name, args) = split_name(first);
        if name.is_empty() {
            return Err(ParseError::EmptyCellMagicName);
        }
        return Ok(Cell::CellMagic(CellMagic {
            name: name.to_owned(),
            args: args.to_owned(),
            body: body.to_owned(),
        }));
    }
    if !(trimmed.starts_with('%') || trimmed.starts_with('!')) {
        return Ok(Cell::Prompt(trimmed.to_owned()));
    }
    let mut lines = Vec::new();
    for (number, text) in logical_lines(code)? {
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if let Some(rest) = text.strip_prefix('%') {
            let (name, args) = split_name(rest);
            if name.is_empty() {
                return Err(ParseError::EmptyMagicName { line: number });
            }
            lines.push(Line::Magic {
                name: name.to_owned(),
                args: args.to_owned(),
            });
        } else if let Some(rest) = text.strip_prefix('!') {
            let command = rest.trim();
            if command.is_empty() {
                return Err(ParseError::EmptyCommand { line: number });
            }
            lines.push(Line::Command(command.to_owned()));
        } else {
            return Err(ParseError::Mixed { line: number });
        }
    }
    if lines.is_empty() {
        Ok(Cell::Empty)
    } else {
        Ok(Cell::Lines(lines))
    }
}

/// Joins `\`-continued lines; yields (first physical line number, text).
fn logical_lines(code: &str) -> Result<Vec<(usize, String)>, ParseError> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in code.lines().enumerate() {
        let number = i + 1;
        let (start, mut text) = match pending.take() {
            Some((start, mut acc)) => {
                acc.push(' ');
                acc.push_str(raw.trim_start());
                (start, acc)
            }
            None => (number, raw.to_owned()),
        };
        if let Some(stripped) = text.trim_end().strip_suffix('\\') {
            text = stripped.to_owned();
            pending = Some((start, text));
            continue;
        }
        out.push((start, text));
    }
    if pending.is_some() {
        return Err(ParseError::DanglingContinuation);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_a_prompt() {
        assert_eq!(
            parse("What is the capital of France?").unwrap(),
            Cell::Prompt("What is the capital of France?".into())
        );
    }

    #[test]
    fn magic_and_command_lines_run_in_order() {
        let cell = parse("%set x = 3\n# a comment\n!echo hi\n%get x").unwrap();
        assert_eq!(
            cell,
            Cell::Lines(vec![
                Line::Magic {
                    name: "set".into(),
                    args: "x = 3".into()
                },
                Line::Command("echo hi".into()),
                Line::Magic {
                    name: "get".into(),
                    args: "x".into()
                },
            ])
        );
    }

    #[test]
    fn cell_magic_keeps_its_body_verbatim() {
        let cell = parse("%%sh -e\necho a\n  echo b\n").unwrap();
        assert_eq!(
            cell,
            Cell::CellMagic(CellMagic {
                name: "sh".into(),
                args: "-e".into(),
                body: "echo a\n  echo b\n".into()
            })
        );
    }

    #[test]
    fn continuation_joins_lines() {
        assert_eq!(
            parse("!echo a \\\n   b").unwrap(),
            Cell::Lines(vec![Line::Command("echo a  b".into())])
        );
        assert_eq!(parse("!echo \\"), Err(ParseError::DanglingContinuation));
    }

    #[test]
    fn prose_after_a_magic_is_an_error_naming_the_line() {
        assert_eq!(
            parse("%set x = 1\nhello there"),
            Err(ParseError::Mixed { line: 2 })
        );
        assert_eq!(parse("% set"), Err(ParseError::EmptyMagicName { line: 1 }));
        assert_eq!(parse("!"), Err(ParseError::EmptyCommand { line: 1 }));
    }

    #[test]
    fn exit_and_quit_alone_ask_the_front_end_to_close() {
        assert_eq!(parse(" exit\n").unwrap(), Cell::Exit);
        assert_eq!(parse("quit()").unwrap(), Cell::Exit);
        assert_eq!(parse("exit now").unwrap(), Cell::Prompt("exit now".into()));
    }

    #[test]
    fn whitespace_is_empty() {
        assert_eq!(parse("  \n\t").unwrap(), Cell::Empty);
        assert_eq!(
            parse("%help\n# only a comment").unwrap().to_owned(),
            parse("%help").unwrap()
        );
    }
}
