//! The checks every format shares: names, versions, descriptions,
//! generation settings, and templates against their contract.
//!
//! Each check returns a [`LoadError`] at the field it is about; none of
//! them reads a file or knows which format it serves.

use super::doc::{Doc, Obj};
use super::limits::{
    MAX_COMPATIBILITY_CHARS, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_TEMPERATURE,
};
use super::phase_refs;
use crate::error::LoadError;
use crate::model::GenerationOverrides;
use crate::template::{Contract, Template, TemplateError};
use unicode_normalization::UnicodeNormalization;

/// The Agent Skills name rule, applied to every format, as the
/// specification's reference validator (`skills-ref`) applies it: the name
/// in Unicode NFKC form is 1–64 characters, lowercase letters (any script),
/// digits and hyphens, no hyphen at either end, no two in a row.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    let name = nfkc(name);
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Some(format!(
            "`{name}` is {chars} characters long; at most {MAX_NAME_CHARS} are allowed"
        ));
    }
    let allowed = |c: char| c == '-' || (is_name_char(c) && c.to_lowercase().eq([c]));
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return Some(format!("`{name}` contains `{c}`"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some(format!("`{name}` starts or ends with `-`"));
    }
    if name.contains("--") {
        return Some(format!("`{name}` contains `--`"));
    }
    None
}

/// `text` in Unicode NFKC form, in which names are checked and compared
/// with their folder (so a decomposed `é` is the composed one).
pub fn nfkc(text: &str) -> String {
    text.nfkc().collect()
}

/// A letter or digit of any script — what Python's `str.isalnum` accepts,
/// which the reference validator uses: combining marks (accents not
/// composed, most vowel signs) are not letters there.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() && !unicode_normalization::char::is_combining_mark(c)
}

/// What to do about a bad name: the same name made valid, when possible.
pub fn name_remedy(name: &str) -> String {
    let mut fixed = String::new();
    for c in nfkc(name).chars().flat_map(char::to_lowercase) {
        let c = if is_name_char(c) { c } else { '-' };
        if !(c == '-' && (fixed.is_empty() || fixed.ends_with('-'))) {
            fixed.push(c);
        }
    }
    let fixed: String = fixed
        .trim_end_matches('-')
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    let fixed = fixed.trim_end_matches('-');
    if fixed.is_empty() || fixed == name {
        "use lowercase letters, digits and single hyphens (`code-review`), at most 64 characters"
            .into()
    } else {
        format!("use lowercase letters, digits and single hyphens, e.g. `{fixed}`")
    }
}

pub fn check_name(doc: &Doc<'_>, field: &str, name: &str) -> Result<(), LoadError> {
    match name_problem(name) {
        Some(problem) => Err(doc.error(
            field,
            format!("invalid skill name: {problem}"),
            name_remedy(name),
        )),
        None => Ok(()),
    }
}

pub fn parse_version(doc: &Doc<'_>, field: &str, text: &str) -> Result<semver::Version, LoadError> {
    semver::Version::parse(text.trim()).map_err(|e| {
        doc.error(
            field,
            format!("`{text}` is not a semantic version ({e})"),
            "write MAJOR.MINOR.PATCH, e.g. `1.0.0` (quote it in YAML: `version: \"1.0.0\"`)",
        )
    })
}

pub fn check_description(doc: &Doc<'_>, field: &str, text: &str) -> Result<(), LoadError> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        return Err(doc.error(
            field,
            "the description is empty",
            "say in one or two sentences what the skill does and when to use it",
        ));
    }
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(doc.error(
            field,
            format!("the description is {chars} characters long; at most {MAX_DESCRIPTION_CHARS} are allowed"),
            "shorten it; move details into the skill's instructions or docs",
        ));
    }
    Ok(())
}

/// The optional `compatibility` of `obj`: at most 500 characters; an
/// empty one is none (the reference validator accepts it).
pub fn compatibility(obj: &Obj<'_>) -> Result<Option<String>, LoadError> {
    let Some(c) = obj.str("compatibility")? else {
        return Ok(None);
    };
    let n = c.chars().count();
    if n > MAX_COMPATIBILITY_CHARS {
        return Err(obj.error(
            "compatibility",
            format!(
                "`compatibility` is {n} characters; at most {MAX_COMPATIBILITY_CHARS} are allowed"
            ),
            "state briefly what environment the skill needs",
        ));
    }
    Ok(Some(c.to_string()).filter(|c| !c.trim().is_empty()))
}

/// Reads `max_tokens` and `temperature` of `obj`: ≥ 1 and 0.0 ..= 2.0.
pub fn generation(obj: &Obj<'_>) -> Result<GenerationOverrides, LoadError> {
    let max_tokens = match obj.u64("max_tokens")? {
        None => None,
        Some(n) if (1..=u64::from(u32::MAX)).contains(&n) => Some(n as u32),
        Some(n) => {
            return Err(obj.error(
                "max_tokens",
                format!("`max_tokens` is {n}; it must be at least 1"),
                "give the largest number of tokens to generate, e.g. `max_tokens: 128`",
            ))
        }
    };
    let temperature = match obj.f64("temperature")? {
        None => None,
        Some(t) if (0.0..=MAX_TEMPERATURE).contains(&t) => Some(t as f32),
        Some(t) => {
            return Err(obj.error(
                "temperature",
                format!("`temperature` is {t}; it must be between 0.0 and {MAX_TEMPERATURE:.1}"),
                "use 0.0–0.4 for factual output, 0.5–1.0 for varied output",
            ))
        }
    };
    Ok(GenerationOverrides {
        max_tokens,
        temperature,
    })
}

/// Parses the template in `field` and checks it against `contract`; an
/// error points at the template's own line within the file.
pub fn template(
    doc: &Doc<'_>,
    field: &str,
    source: &str,
    contract: &Contract,
) -> Result<Template, LoadError> {
    let error = |(message, remedy, line): (String, String, Option<usize>)| {
        LoadError::new(doc.file, message, remedy)
            .field(field)
            .line(template_line(doc, field, line))
    };
    let parts = |e: TemplateError| (e.message, e.remedy, e.line);
    let t = Template::parse(source).map_err(|e| error(parts(e)))?;
    phase_refs::check_hyphenated(&t, contract).map_err(error)?;
    t.check(contract).map_err(|e| error(parts(e)))?;
    phase_refs::check_subscripts(&t, contract).map_err(error)?;
    Ok(t)
}

/// The line in the file of line `line` of the template in `field`: a
/// block scalar (`template: |`) starts on the line after its key; any
/// other value is reported at its key.
pub fn template_line(doc: &Doc<'_>, field: &str, line: Option<usize>) -> Option<usize> {
    let key = doc.line_of(field)?;
    Some(match (line, block_scalar(doc, key)) {
        (Some(l), true) => key + l,
        _ => key,
    })
}

fn block_scalar(doc: &Doc<'_>, key_line: usize) -> bool {
    let Some(line) = doc.text.lines().nth(key_line - doc.line_offset - 1) else {
        return false;
    };
    let after = line
        .split_once(": ")
        .map(|(_, v)| v.trim())
        .or_else(|| line.trim_end().ends_with(':').then_some(""));
    after.is_some_and(|v| v.starts_with('|') || v.starts_with('>'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_name_rule_refuses_each_bad_shape() {
        assert!(name_problem("code-review-2").is_none());
        for bad in [
            "",
            "Code",
            "a_b",
            "-a",
            "a-",
            "a--b",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(name_problem(bad).is_some(), "{bad:?} should be refused");
        }
        // Lowercase letters of any script, as the specification allows.
        for good in ["données", "привет-мир", "日本語", "λόγος", "cafe\u{301}"] {
            assert_eq!(name_problem(good), None, "{good:?} should be accepted");
        }
        for bad in ["Café", "ПРИВЕТ", "हिंदी", &"é".repeat(65)] {
            assert!(name_problem(bad).is_some(), "{bad:?} should be refused");
        }
        assert_eq!(name_problem("Café").unwrap(), "`Café` contains `C`");
        assert_eq!(
            name_remedy("Ünïcode_Name"),
            "use lowercase letters, digits and single hyphens, e.g. `ünïcode-name`"
        );
        assert_eq!(
            name_remedy("My_Skill"),
            "use lowercase letters, digits and single hyphens, e.g. `my-skill`"
        );
    }

    #[test]
    fn a_template_error_points_at_its_line_in_the_file() {
        let text = "name: x\ntemplate: |\n  Summarize\n  {{ inptu }}\n";
        let doc = Doc::new(Path::new("s.yaml"), text, false);
        let e = template(
            &doc,
            "template",
            "Summarize\n{{ inptu }}\n",
            &Contract::default(),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(4));
        assert!(e.remedy.contains("did you mean `input`"), "{}", e.remedy);
    }
}
