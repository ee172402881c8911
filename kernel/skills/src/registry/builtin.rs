//! The skills compiled into the binary ([`Origin::Builtin`]): short native
//! manifests in `builtin/`, written for small local models (one plain
//! instruction, the input last, low temperature). Any other origin with
//! the same name and version shadows them; a higher version is preferred.
//!
//! They are parsed with [`format::parse_str`] at open (a few microseconds
//! each); errors name `<builtin>/NAME/skill.yaml`. A built-in that does
//! not parse is a bug the tests below catch, and never stops the others.

use std::path::PathBuf;

use super::catalog::{Body, Candidate};
use crate::format;
use crate::model::{Origin, SkillFormat};
use crate::{LoadError, Skill};

/// Name and manifest of each built-in skill.
pub const BUILTINS: &[(&str, &str)] = &[
    ("summarize", include_str!("builtin/summarize.yaml")),
    ("explain", include_str!("builtin/explain.yaml")),
    ("proofread", include_str!("builtin/proofread.yaml")),
];

/// What errors about built-in `name` call its file.
pub fn display_path(name: &str) -> PathBuf {
    PathBuf::from(format!("<builtin>/{name}/skill.yaml"))
}

/// Parses a built-in manifest. Its source has no path: it is no file.
pub fn parse(text: &str, path: &std::path::Path) -> Result<Skill, LoadError> {
    let mut skill = format::parse_str(text, SkillFormat::Native, path, Origin::Builtin)?;
    skill.source.path = None;
    Ok(skill)
}

/// One candidate per built-in that parses; the errors of those that do not.
pub fn candidates() -> Vec<Result<Candidate, LoadError>> {
    BUILTINS
        .iter()
        .map(|(name, text)| {
            let path = display_path(name);
            let skill = parse(text, &path)?;
            Ok(Candidate {
                header: skill.header(),
                body: Body::Builtin { text, path },
                rank: usize::MAX,
                error: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::SkillBody;
    use crate::template::TemplateValues;

    #[test]
    fn every_builtin_parses_under_its_own_name_and_says_it_is_built_in() {
        for (name, text) in BUILTINS {
            let skill = parse(text, &display_path(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&skill.meta.name, name);
            assert_eq!(skill.source.origin, Origin::Builtin);
            assert_eq!(skill.source.display(), "<built in>");
            assert!(!skill.meta.description.is_empty());
        }
        assert_eq!(
            candidates().iter().filter(|c| c.is_ok()).count(),
            BUILTINS.len()
        );
    }

    #[test]
    fn summarize_renders_its_defaults_into_a_short_plain_prompt() {
        let skill = parse(BUILTINS[0].1, &display_path("summarize")).unwrap();
        let SkillBody::Prompt(prompt) = &skill.body else {
            panic!("summarize is a prompt skill");
        };
        let mut params = serde_json::Map::new();
        for p in &skill.parameters {
            params.insert(p.name.clone(), p.default.clone().unwrap());
        }
        let phases = BTreeMap::new();
        let text = prompt
            .template
            .render(&TemplateValues {
                input: "Cats sleep a lot.",
                phases: &phases,
                params: &params,
            })
            .unwrap();
        assert_eq!(
            text,
            "Summarise the text below, in at most 2 sentences.\n\nText:\nCats sleep a lot.\n"
        );
    }
}
