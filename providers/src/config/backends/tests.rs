use super::*;
use crate::config::ModelsConfig;

fn models(toml_text: &str) -> Result<ModelsConfig, String> {
    toml::from_str::<ModelsConfig>(toml_text).map_err(|e| e.to_string())
}

fn names(config: &ModelsConfig) -> Vec<String> {
    config.plan().unwrap().into_iter().map(|p| p.name).collect()
}

#[test]
fn the_old_list_still_orders_the_builtins() {
    let c = models("backends = [\"ollama\", \"candle\"]").unwrap();
    assert_eq!(names(&c), ["ollama", "candle"]);
    assert_eq!(names(&ModelsConfig::default()), ["candle", "ollama"]);
    let e = models("backends = [\"candle\", \"gpu\"]")
        .unwrap()
        .plan()
        .unwrap_err();
    assert!(
        e.contains("unknown backend `gpu`") && e.contains("[models.backends.gpu]"),
        "{e}"
    );
}

#[test]
fn named_backends_follow_the_builtins_unless_an_order_is_given() {
    let text = r#"
        [backends.gpu]
        kind = "openai"
        urls = ["http://10.0.0.5:8000/v1/", "http://10.0.0.6:8000/v1"]
        api_key_env = "GPU_API_KEY"
        max_concurrency = 8
        [backends.claude]
        kind = "anthropic"
        url = "https://api.anthropic.com/v1"
        api_key_env = "ANTHROPIC_API_KEY"
    "#;
    let c = models(text).unwrap();
    assert_eq!(names(&c), ["candle", "ollama", "claude", "gpu"]);
    let gpu = c
        .plan()
        .unwrap()
        .into_iter()
        .find(|p| p.name == "gpu")
        .unwrap();
    assert_eq!(gpu.config.kind, BackendKind::Openai);
    assert_eq!(
        gpu.config.urls,
        ["http://10.0.0.5:8000/v1", "http://10.0.0.6:8000/v1"],
        "trailing slashes go"
    );
    assert_eq!(gpu.config.max_concurrency, 8);
    let ordered = models(&format!("order = [\"gpu\", \"candle\"]\n{text}")).unwrap();
    assert_eq!(names(&ordered), ["gpu", "candle"]);
}

#[test]
fn a_bad_table_is_refused_naming_it_and_the_key() {
    let cases = [
        (
            "[backends.gpu]\nkind = \"openia\"\nurl = \"http://h/v1\"",
            "[models.backends.gpu]",
            "openia",
        ),
        (
            "[backends.gpu]\nkind = \"openai\"",
            "[models.backends.gpu]",
            "needs `url`",
        ),
        (
            "[backends.gpu]\nkind = \"openai\"\nurl = \"http://a/v1\"\nurls = [\"http://b/v1\"]",
            "[models.backends.gpu]",
            "`url` and `urls` are both set",
        ),
        (
            "[backends.gpu]\nkind = \"openai\"\nurl = \"http://a/v1\"\nurel = 1",
            "[models.backends.gpu]",
            "urel",
        ),
        (
            "[backends.gpu]\nkind = \"openai\"\nurl = \"ftp://a\"",
            "[models.backends.gpu]",
            "not an http",
        ),
        (
            "[backends.gpu]\nkind = \"openai\"\nurl = \"http://a/v1\"\napi_key_env = \"sk-123\"",
            "[models.backends.gpu]",
            "name of an environment variable",
        ),
        (
            "[backends.local]\nkind = \"candle\"",
            "[models.backends.local]",
            "named `candle`",
        ),
        (
            "[backends.gpu]\nkind = \"openai\"\nurl = \"http://a/v1\"\ndiscover = false",
            "[models.backends.gpu]",
            "needs `models`",
        ),
    ];
    for (text, table, said) in cases {
        let e = models(text).unwrap_err();
        assert!(e.contains(table) && e.contains(said), "{text}\n→ {e}");
    }
}

#[test]
fn credentials_in_a_url_are_refused_without_echoing_them() {
    let e =
        models("[backends.gpu]\nkind = \"openai\"\nurl = \"http://user:s3cret@h/v1\"").unwrap_err();
    assert!(e.contains("carries credentials"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
}

#[test]
fn an_order_with_both_spellings_or_a_repeat_is_refused() {
    let e = models("backends = [\"candle\"]\norder = [\"candle\"]")
        .unwrap()
        .plan()
        .unwrap_err();
    assert!(e.contains("keep `order`"), "{e}");
    let text =
        "order = [\"gpu\", \"gpu\"]\n[backends.gpu]\nkind = \"openai\"\nurl = \"http://a/v1\"";
    let e = models(text).unwrap().plan().unwrap_err();
    assert!(e.contains("twice"), "{e}");
}
