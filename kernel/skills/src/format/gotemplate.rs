//! Translating Skillrunner's Go-template prompts into our contract.
//!
//! Skillrunner prompts read two things, in Go-template syntax:
//! `{{.input}}` and a phase's output, `{{.phases.ID.output}}` or the
//! shorthand `{{.phases.ID}}`. They become `{{ input }}` and
//! `{{ phases.ID }}` (`{{ phases["ID"] }}` when the id has a hyphen);
//! trim markers (`{{- … -}}`) are kept, comments (`{{/* … */}}`) become
//! Jinja comments, and text that Jinja would read as a tag (`{%`, `{#`) is
//! escaped. Line breaks are kept, so lines of the result are lines of the
//! source. Any other action (`if`, `range`, pipes, functions, variables)
//! has no faithful translation and is an error with its line.

/// Why a prompt cannot be translated.
#[derive(Debug, PartialEq)]
pub struct Untranslatable {
    pub message: String,
    pub remedy: String,
    /// 1-based line in the prompt.
    pub line: usize,
}

const REMEDY: &str = "a Skillrunner prompt may use `{{.input}}` and `{{.phases.ID.output}}` only; \
     for logic, rewrite the skill as a native skill.yaml with Jinja (`{% if … %}`)";

/// The prompt `source` in our template syntax.
pub fn translate(source: &str) -> Result<String, Untranslatable> {
    let mut out = String::with_capacity(source.len() + 16);
    let mut rest = source;
    let mut consumed = 0;
    while let Some(open) = rest.find("{{") {
        literal(&rest[..open], &mut out);
        let line = source[..consumed + open].matches('\n').count() + 1;
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(Untranslatable {
                message: "`{{` is never closed by `}}`".into(),
                remedy: "close the action with `}}`".into(),
                line,
            });
        };
        out.push_str(&action(&after[..close], line)?);
        let used = open + 2 + close + 2;
        consumed += used;
        rest = &rest[used..];
    }
    literal(rest, &mut out);
    Ok(out)
}

/// Text between actions, with Jinja's other openers escaped.
fn literal(text: &str, out: &mut String) {
    out.push_str(&text.replace("{%", "{{ '{%' }}").replace("{#", "{{ '{#' }}"));
}

/// One action's inside (between `{{` and `}}`), translated.
fn action(inner: &str, line: usize) -> Result<String, Untranslatable> {
    let (left, inner) = match inner.strip_prefix("- ") {
        Some(i) => ("{{- ", i),
        None => ("{{ ", inner),
    };
    let (inner, right) = match inner.strip_suffix(" -") {
        Some(i) => (i, " -}}"),
        None => (inner, " }}"),
    };
    let expr = inner.trim();
    if let Some(comment) = expr.strip_prefix("/*").and_then(|c| c.strip_suffix("*/")) {
        return Ok(format!("{{#{}#}}", comment.replace("#}", "# }")));
    }
    let refused = |message: String| Untranslatable {
        message,
        remedy: REMEDY.into(),
        line,
    };
    let Some(path) = expr.strip_prefix('.') else {
        return Err(refused(format!(
            "the Go template action `{{{{{expr}}}}}` cannot be translated"
        )));
    };
    let mut parts = path.split('.');
    let var = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("input"), None, ..) => "input".to_string(),
        (Some("phases"), Some(id), tail, None)
            if is_id(id) && matches!(tail, None | Some("output")) =>
        {
            if id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !id.starts_with(|c: char| c.is_ascii_digit())
            {
                format!("phases.{id}")
            } else {
                format!("phases[\"{id}\"]")
            }
        }
        _ => {
            return Err(refused(format!(
                "`{{{{{expr}}}}}` is not a Skillrunner template variable"
            )))
        }
    };
    Ok(format!("{left}{var}{right}"))
}

fn is_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_and_phase_outputs_become_our_variables() {
        let src = "Analyze: {{.input}}\nBased on {{ .phases.analyze.output }} and {{.phases.deep-dive}}\n{{- .input -}}";
        assert_eq!(
            translate(src).unwrap(),
            "Analyze: {{ input }}\nBased on {{ phases.analyze }} and {{ phases[\"deep-dive\"] }}\n{{- input -}}"
        );
    }

    #[test]
    fn jinja_syntax_in_text_and_go_comments_are_made_harmless() {
        let out = translate("50{% off {#x {{/* note */}}").unwrap();
        assert_eq!(out, "50{{ '{%' }} off {{ '{#' }}x {# note #}");
        assert!(crate::template::Template::parse(&out).is_ok());
    }

    #[test]
    fn logic_and_unknown_fields_are_refused_with_their_line() {
        let e = translate("a\n{{if .input}}x{{end}}").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("`{{if .input}}` cannot be translated"),
            "{}",
            e.message
        );
        let e = translate("{{.inputs}}").unwrap_err();
        assert!(
            e.message.contains("not a Skillrunner template variable"),
            "{}",
            e.message
        );
        let e = translate("{{.phases.a.tokens}}").unwrap_err();
        assert!(e.message.contains("phases.a.tokens"), "{}", e.message);
        assert_eq!(translate("x {{ .input").unwrap_err().line, 1);
    }
}
