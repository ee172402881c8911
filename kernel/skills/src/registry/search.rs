//! Search: a small query language over skill headers, ranked.
//!
//! `tag:rust author:ana category:writing kind:workflow origin:user free words`
//!
//! * `field:value` filters must all hold: `tag` (one of the tags, exactly),
//!   `author` (contained in the author), `category` (exactly), `kind` (the
//!   skill type), `origin` (project, configured, user, builtin, cell).
//!   Values may be quoted: `tag:"machine learning"`. Case never matters.
//! * Free words must each match somewhere; each scores by where: the exact
//!   name (1000) > a name prefix (500) > the start of a name segment after
//!   `-` (300) > a tag (200) > inside the name (100) > the description,
//!   category or author (50). Hits sort by score, then name.
//!
//! Headers are lower-cased once into a [`SearchDoc`] when the catalogue
//! changes, so a query costs a few string comparisons per skill. This
//! module never reads files or lifecycle state.

use crate::template::nearest;
use crate::{ErrorCode, SkillError, SkillHeader};

/// The fields a query may filter on.
const FIELDS: &[&str] = &["tag", "author", "category", "kind", "origin"];

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// `(field, value)`, lower-cased; every one must hold.
    pub filters: Vec<(String, String)>,
    /// Lower-cased free words; every one must match.
    pub words: Vec<String>,
}

impl Query {
    /// Parses `text`; an unknown field or an empty value is an error.
    pub fn parse(text: &str) -> Result<Query, SkillError> {
        let mut query = Query::default();
        for token in tokens(text) {
            let token = token.to_lowercase();
            let field = token
                .split_once(':')
                .filter(|(f, _)| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphabetic()));
            match field {
                Some((f, v)) => {
                    let f = if f == "tags" { "tag" } else { f };
                    if !FIELDS.contains(&f) {
                        let hint = match nearest(f, FIELDS.iter().copied()) {
                            Some(n) => {
                                format!("did you mean `{n}:`? Fields: {}", FIELDS.join(", "))
                            }
                            None => format!(
                                "fields are {}; other words search names, tags and descriptions",
                                FIELDS.join(", ")
                            ),
                        };
                        return Err(SkillError::new(
                            ErrorCode::ValidationError,
                            format!("unknown search field `{f}`"),
                            hint,
                        ));
                    }
                    if v.is_empty() {
                        return Err(SkillError::new(
                            ErrorCode::ValidationError,
                            format!("`{f}:` needs a value"),
                            format!("write `{f}:VALUE`, quoted if it has spaces"),
                        ));
                    }
                    query.filters.push((f.to_string(), v.to_string()));
                }
                None => query.words.push(token),
            }
        }
        Ok(query)
    }
}

/// Splits on whitespace, keeping double-quoted runs together (quotes
/// dropped).
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A header, lower-cased for matching.
#[derive(Debug, Clone)]
pub struct SearchDoc {
    /// The skill's name as declared.
    pub skill: String,
    /// Lower-cased.
    pub name: String,
    tags: Vec<String>,
    author: String,
    category: String,
    description: String,
    kind: &'static str,
    origin: &'static str,
}

impl SearchDoc {
    pub fn new(header: &SkillHeader) -> SearchDoc {
        let lower = |s: &Option<String>| s.as_deref().unwrap_or_default().to_lowercase();
        SearchDoc {
            skill: header.meta.name.clone(),
            name: header.meta.name.to_lowercase(),
            tags: header.meta.tags.iter().map(|t| t.to_lowercase()).collect(),
            author: lower(&header.meta.author),
            category: lower(&header.meta.category),
            description: header.meta.description.to_lowercase(),
            kind: header.kind.as_str(),
            origin: header.source.origin.as_str(),
        }
    }

    /// The score of this skill for `query`, `None` if it does not match.
    pub fn score(&self, query: &Query) -> Option<u32> {
        let filters_hold = query.filters.iter().all(|(f, v)| match f.as_str() {
            "tag" => self.tags.iter().any(|t| t == v),
            "author" => self.author.contains(v.as_str()),
            "category" => self.category == *v,
            "kind" => self.kind == v,
            "origin" => self.origin == v,
            _ => false,
        });
        if !filters_hold {
            return None;
        }
        query.words.iter().map(|w| self.word_score(w)).sum()
    }

    fn word_score(&self, word: &str) -> Option<u32> {
        let w = word;
        let score = if self.name == w {
            1000
        } else if self.name.starts_with(w) {
            500
        } else if self.name.split('-').skip(1).any(|seg| seg.starts_with(w)) {
            300
        } else if self.tags.iter().any(|t| t == w) {
            200
        } else if self.name.contains(w) {
            100
        } else if self.description.contains(w)
            || self.category.contains(w)
            || self.author.contains(w)
        {
            50
        } else {
            return None;
        };
        Some(score)
    }
}

#[cfg(test)]
mod tests;
