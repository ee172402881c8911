//! The scripted provider through a real registry.

use super::*;
use crate::{ModelsConfig, Registry, StreamEvent};

fn request(prompt: &str) -> CompletionRequest {
    CompletionRequest {
        model: "m".into(),
        messages: vec![ChatMessage::new("user", prompt)],
        options: GenerationOptions::default(),
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    }
}

#[tokio::test]
async fn answers_from_its_table_in_pieces_through_a_registry() {
    let p = ScriptedProvider::builder("scripted")
        .models(&["m"])
        .table([("hi", "hello there")])
        .piece_chars(3)
        .build();
    let r = Registry::new(vec![p.clone()], ModelsConfig::default());
    let (route, mut stream) = r
        .stream(request("hi"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(route.spec(), "m@scripted");
    let mut pieces = Vec::new();
    while let Some(Ok(StreamEvent::Text(t))) = futures::StreamExt::next(&mut stream).await {
        pieces.push(t);
    }
    assert_eq!(pieces, ["hel", "lo ", "the", "re"]);
    let missing = r.complete(request("bye"), CancellationToken::new()).await;
    assert!(matches!(missing, Err(ProviderError::Inference(m)) if m.contains("bye")));
    assert_eq!(p.call_count(), 2);
    assert_eq!(p.calls()[0].prompt(), "hi");
    assert!(p.calls()[0].finished.is_some());
}

#[tokio::test]
async fn scripted_failures_come_first_then_answers() {
    let p = ScriptedProvider::builder("scripted").fail_first(2).build();
    let r = Registry::new(vec![p.clone()], ModelsConfig::default());
    for _ in 0..2 {
        let e = r.complete(request("x"), CancellationToken::new()).await;
        assert!(matches!(e, Err(ProviderError::Unavailable { .. })));
    }
    let (_, done) = r
        .complete(request("x"), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.text, "x");
    p.set_available(false);
    let e = r.route("m").await.unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable { .. }), "{e}");
}

#[tokio::test(start_paused = true)]
async fn counts_concurrent_calls_and_stops_when_cancelled() {
    let p = ScriptedProvider::builder("scripted")
        .delay(Duration::from_millis(100))
        .build();
    let r = Registry::new(vec![p.clone()], ModelsConfig::default());
    let calls = (0..3).map(|_| r.complete(request("abc"), CancellationToken::new()));
    let done = futures::future::join_all(calls).await;
    assert!(done.iter().all(|d| d.is_ok()));
    assert_eq!(p.max_concurrent(), 3);

    let cancel = CancellationToken::new();
    let slow = r.complete(request("abcdefgh"), cancel.clone());
    let (done, ()) = tokio::join!(slow, async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancel.cancel();
    });
    let (_, done) = done.unwrap();
    assert_eq!(done.text, "");
    assert_eq!(done.stats.finish_reason, "cancelled");
}
