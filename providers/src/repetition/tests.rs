use super::*;
use crate::GenerationStats;

#[test]
fn a_phrase_repeated_past_the_span_is_a_loop_and_prose_is_not() {
    let looped = format!(
        "The capital of France is Paris. It is known for {}",
        "fashion sports ".repeat(8)
    );
    assert_eq!(looping(looped.as_bytes()), Some("fashion sports ".len()));
    let prose = "Paris is the capital of France. It lies on the Seine, and it is \
                 known for its museums, its food and its long history as a centre \
                 of art, science and politics in Europe.";
    assert_eq!(looping(prose.as_bytes()), None);
}

#[test]
fn a_paragraph_said_twice_and_a_list_that_starts_over_are_loops() {
    let paragraph = "The ocean also has a profound impact on human societies globally. \
        Climate change poses significant risks for the planet, from rising sea levels \
        to extreme weather events like hurricanes and tsunamis.\n\n";
    let once = format!("The ocean is vast.\n\n{paragraph}");
    assert_eq!(looping(once.as_bytes()), None);
    let twice = format!("{once}{paragraph}");
    assert_eq!(looping(twice.as_bytes()), Some(paragraph.len()));

    // What the guard compares: the list with its numbers left out.
    let list: String = (5..=8)
        .map(|i| {
            if i % 2 == 1 {
                format!("{i}. **Tuna and Chili with Salsa**: a spicy option, served with a taco bar.\n")
            } else {
                format!("{i}. **Bacon and Chilli with Sour Cream**: a classic choice, with a side of arugula.\n")
            }
        })
        .collect();
    let compared: Vec<u8> = comparable(&list).collect();
    assert!(looping(&compared).is_some(), "items 5-6 said again as 7-8");
    assert_eq!(
        looping(list.as_bytes()),
        None,
        "with the numbers, no exact repeat"
    );
}

#[test]
fn short_repeats_and_layout_are_not_loops() {
    // Four repeats, but shorter than the span: a list, a refrain.
    assert_eq!(looping("ha ha ha ha ".as_bytes()), None);
    assert_eq!(looping("ha ".repeat(40).as_bytes()), Some(3));
    // No letter or digit in the unit: a rule, a table's separator row.
    assert_eq!(looping("-".repeat(300).as_bytes()), None);
    assert_eq!(looping("| --- ".repeat(40).as_bytes()), None);
}

/// A model that says `pieces` and then `loop_piece` until cancelled, and
/// then ends as every backend does on a cancel.
fn looping_model(
    pieces: Vec<&'static str>,
    loop_piece: &'static str,
    cancel: CancellationToken,
) -> TokenStream {
    let head = futures::stream::iter(pieces.into_iter().map(|p| Ok(StreamEvent::Text(p.into()))));
    let tail = futures::stream::unfold((0u32, cancel), move |(n, cancel)| async move {
        if n > 10_000 {
            return None;
        }
        if cancel.is_cancelled() {
            let stats = GenerationStats {
                prompt_tokens: 5,
                completion_tokens: n,
                prompt_ms: 1.0,
                first_token_ms: Some(1.0),
                total_ms: 2.0,
                finish_reason: "cancelled".into(),
                cached: false,
                ..Default::default()
            };
            return Some((Ok(StreamEvent::Done(stats)), (u32::MAX, cancel)));
        }
        Some((Ok(StreamEvent::Text(loop_piece.into())), (n + 1, cancel)))
    });
    Box::pin(head.chain(tail))
}

#[tokio::test]
async fn a_looping_answer_is_cancelled_and_ends_as_repetition() {
    let cancel = CancellationToken::new();
    let inner = looping_model(
        vec!["Paris. ", "It is known for "],
        "fashion sports ",
        cancel.clone(),
    );
    let completion = crate::collect(guard(inner, cancel.clone())).await.unwrap();
    assert!(cancel.is_cancelled(), "the model was told to stop");
    assert_eq!(completion.stats.finish_reason, REPETITION);
    assert!(completion
        .text
        .starts_with("Paris. It is known for fashion sports"));
    let repeats = completion.text.matches("fashion sports").count();
    assert!(
        (repeats_needed(15)..=MIN_SPAN / 3).contains(&repeats),
        "stopped soon after the loop showed ({repeats} repeats)"
    );
}

#[tokio::test]
async fn an_answer_that_does_not_loop_passes_unchanged() {
    let cancel = CancellationToken::new();
    let pieces = vec!["Paris ", "is ", "the ", "capital ", "of ", "France."];
    let stats = GenerationStats {
        prompt_tokens: 5,
        completion_tokens: 6,
        prompt_ms: 1.0,
        first_token_ms: Some(1.0),
        total_ms: 2.0,
        finish_reason: "stop".into(),
        cached: false,
        ..Default::default()
    };
    let events: Vec<_> = pieces
        .into_iter()
        .map(|p| Ok(StreamEvent::Text(p.into())))
        .chain([Ok(StreamEvent::Done(stats.clone()))])
        .collect();
    let completion = crate::collect(guard(
        Box::pin(futures::stream::iter(events)),
        cancel.clone(),
    ))
    .await
    .unwrap();
    assert!(!cancel.is_cancelled());
    assert_eq!(completion.text, "Paris is the capital of France.");
    assert_eq!(completion.stats, stats);
}
