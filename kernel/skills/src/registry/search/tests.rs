use super::*;
use crate::registry::tests::fixtures::header;

fn rank(query: &str, docs: &[SearchDoc]) -> Vec<String> {
    let q = Query::parse(query).unwrap();
    let mut hits: Vec<(u32, &str)> = docs
        .iter()
        .filter_map(|d| d.score(&q).map(|s| (s, d.name.as_str())))
        .collect();
    hits.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    hits.into_iter().map(|(_, n)| n.to_string()).collect()
}

fn docs() -> Vec<SearchDoc> {
    let mut review = header("code-review", "1.0.0");
    review.meta.description = "Reviews a diff for bugs".into();
    review.meta.tags = vec!["code".into(), "Rust".into()];
    review.meta.author = Some("Ana Lima".into());
    review.meta.category = Some("engineering".into());
    let mut code = header("code", "1.0.0");
    code.meta.description = "Writes code".into();
    let mut coder = header("coder", "1.0.0");
    coder.meta.category = Some("Writing".into());
    let mut summarize = header("summarize", "1.0.0");
    summarize.meta.description = "Summarises text, code or prose".into();
    summarize.meta.tags = vec!["writing".into()];
    let mut unicode = header("decode-base64", "1.0.0");
    unicode.meta.description = "Decodes base64".into();
    [review, code, coder, summarize, unicode]
        .iter()
        .map(SearchDoc::new)
        .collect()
}

#[test]
fn exact_name_beats_prefix_beats_segment_beats_tag_beats_inner_name_beats_text() {
    assert_eq!(
        rank("code", &docs()),
        ["code", "code-review", "coder", "decode-base64", "summarize"]
    );
    assert_eq!(rank("review", &docs()), ["code-review"]);
    assert_eq!(rank("rust", &docs()), ["code-review"]);
}

#[test]
fn every_free_word_must_match() {
    assert_eq!(rank("code bugs", &docs()), ["code-review"]);
    assert!(rank("code nothing-like-this", &docs()).is_empty());
}

#[test]
fn filters_narrow_and_ignore_case() {
    assert_eq!(rank("tag:RUST", &docs()), ["code-review"]);
    assert_eq!(rank("author:ana", &docs()), ["code-review"]);
    assert_eq!(rank("category:writing", &docs()), ["coder"]);
    assert_eq!(rank("tag:writing summ", &docs()), ["summarize"]);
    assert_eq!(rank("kind:prompt origin:user", &docs()).len(), 5);
    assert!(rank("kind:workflow", &docs()).is_empty());
}

#[test]
fn quoted_values_keep_their_spaces() {
    let q = Query::parse(r#"tag:"machine learning" "two words""#).unwrap();
    assert_eq!(
        q.filters,
        [("tag".to_string(), "machine learning".to_string())]
    );
    assert_eq!(q.words, ["two words"]);
}

#[test]
fn an_unknown_field_is_an_error_with_the_nearest_field() {
    let e = Query::parse("tga:rust").unwrap_err();
    assert_eq!(e.code, ErrorCode::ValidationError);
    assert_eq!(e.message, "unknown search field `tga`");
    assert_eq!(
        e.hint,
        "did you mean `tag:`? Fields: tag, author, category, kind, origin"
    );
    assert_eq!(
        Query::parse("author:").unwrap_err().message,
        "`author:` needs a value"
    );
    // Not a field: a word with digits before the colon.
    assert_eq!(Query::parse("v2:x").unwrap().words, ["v2:x"]);
}
