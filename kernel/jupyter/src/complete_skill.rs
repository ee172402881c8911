//! Completion and inspection of skills: skill names after `%%run` and
//! `%skill run|info|…`, a skill's parameters as `name=` after its name,
//! the values of an enum or bool parameter after `name=`; on Shift-Tab,
//! the skill's `%skill info` page or one parameter's type and values.
//!
//! Front ends ask on every keystroke, so this reads only what the
//! registry keeps in memory (names and headers): it must never parse a
//! skill, load one or touch the disk.

use serde_json::Value;

use crate::magics::skill_view::info_markdown;
use crate::magics::split_args;
use crate::skill_actions;
use skillkernel_skills::model::ParamSummary;
use skillkernel_skills::registry::SkillRegistry;
use skillkernel_skills::service::Skills;

/// The `%skill` subcommands whose argument is a skill name.
pub const NAME_SUBCOMMANDS: &[&str] = &[
    "run", "info", "load", "reload", "unload", "enable", "disable", "validate", "metrics", "reset",
    "trust", "untrust", "test", "update", "remove",
];

/// What the word at the cursor is in a skill command.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// A skill name: `%%run NAME`, `%skill info NAME`.
    Name,
    /// A `param` or `param=value` of skill `skill` (as written, perhaps
    /// `name@^1`), after the parameters already `given` (their names).
    Argument { skill: String, given: Vec<String> },
}

/// Where a word starting at byte `word_start` of `line` sits, when `line`
/// is a skill command: `%%run …` on a cell's first line (`first_line`),
/// or `%skill SUB …`. `None` elsewhere, inside a quoted value, and after
/// `%skill run NAME … --` (the input).
pub fn position(line: &str, word_start: usize, first_line: bool) -> Option<Position> {
    let before = &line[..word_start];
    if open_quote(before) {
        return None;
    }
    let words = split_args(before);
    let head: Vec<&str> = words.iter().take(2).map(String::as_str).collect();
    let rest = match head.as_slice() {
        ["%%run", ..] if first_line => &words[1..],
        ["%skill", "run", ..] => &words[2..],
        // The other subcommands take a name and no parameters.
        ["%skill", sub] if NAME_SUBCOMMANDS.contains(sub) && words.len() == 2 => {
            return Some(Position::Name)
        }
        _ => return None,
    };
    match rest.split_first() {
        None => Some(Position::Name),
        Some((_, args)) if args.iter().any(|a| a == "--") => None,
        Some((skill, args)) => Some(Position::Argument {
            skill: skill.clone(),
            given: args
                .iter()
                .map(|a| a.split_once('=').map_or(a.as_str(), |(n, _)| n).trim())
                .map(str::to_owned)
                .collect(),
        }),
    }
}

/// Whether `text` ends inside a quote, as [`split_args`] reads it.
fn open_quote(text: &str) -> bool {
    let mut quote = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '"' || c == '\'' => quote = Some(c),
            _ => {}
        }
    }
    quote.is_some()
}

/// The candidates for `word` at `position`, and the byte offset in `word`
/// where the text they replace starts: past `name=` for a value, else 0.
/// The caller keeps those starting with what is typed.
pub fn candidates(
    registry: &SkillRegistry,
    position: &Position,
    word: &str,
) -> (usize, Vec<String>) {
    let Position::Argument { skill, given } = position else {
        return (0, registry.names());
    };
    let Ok(entry) = registry.get(skill) else {
        return (0, Vec::new());
    };
    let params = &entry.header.parameters;
    if let Some((name, _)) = word.split_once('=') {
        let values = params
            .iter()
            .find(|p| p.name == name)
            .map(values_of)
            .unwrap_or_default();
        return (name.len() + 1, values);
    }
    let names = params
        .iter()
        .filter(|p| !given.contains(&p.name))
        .map(|p| format!("{}=", p.name))
        .collect();
    (0, names)
}

/// What a parameter may be given as: an enum's values (quoted when they
/// hold spaces or quotes, so that they stay one argument), `true` and
/// `false` for a bool, nothing for free text and numbers.
fn values_of(p: &ParamSummary) -> Vec<String> {
    match p.type_name.as_str() {
        "bool" => vec!["true".into(), "false".into()],
        "enum" => p.values.iter().map(|v| quoted(v)).collect(),
        _ => Vec::new(),
    }
}

fn quoted(value: &str) -> String {
    if !value.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        value.to_owned()
    } else if value.contains('"') {
        format!("'{value}'")
    } else {
        format!("\"{value}\"")
    }
}

/// The Markdown page for `word` at `position`: the skill's `%skill info`
/// for a name, the parameter's help for `param` or `param=value`.
pub fn inspect(skills: &Skills, position: &Position, word: &str) -> Option<String> {
    match position {
        Position::Name => {
            let info = skill_actions::info(skills, word).ok()?;
            Some(info_markdown(&info))
        }
        Position::Argument { skill, .. } => {
            let name = word.split_once('=').map_or(word, |(n, _)| n);
            let entry = skills.registry.get(skill).ok()?;
            let param = entry.header.parameters.iter().find(|p| p.name == name)?;
            Some(param_markdown(&entry.header.meta.name, param))
        }
    }
}

/// One parameter's help: type, required or default, values, description.
pub fn param_markdown(skill: &str, p: &ParamSummary) -> String {
    let need = match &p.default {
        _ if p.required => "required".to_owned(),
        Some(Value::String(d)) => format!("optional, default `{d}`"),
        Some(d) => format!("optional, default `{d}`"),
        None => "optional".to_owned(),
    };
    let mut md = format!(
        "**{}** — {} parameter of skill **{skill}** ({need})\n\n",
        p.name, p.type_name
    );
    if !p.values.is_empty() {
        let values: Vec<String> = p.values.iter().map(|v| format!("`{v}`")).collect();
        md.push_str(&format!("Values: {}\n\n", values.join(", ")));
    }
    if !p.description.is_empty() {
        md.push_str(&format!("{}\n", p.description));
    }
    md
}

#[cfg(test)]
mod tests;
