//! Skill execution benchmarks (scripted provider, no model):
//!
//! * overhead — `Executor::run` on a prompt skill against a direct
//!   `Registry::complete` with the same request, cache off, no delay:
//!   per-call p50/p95 of both and the difference (target ≤ 50 µs);
//! * workflow — ten phases in four levels (4, 3, 2, 1), `max_parallel = 4`,
//!   every call sleeping a fixed time: total against the longest path
//!   (4 calls) and the sum (10 calls);
//! * tool loop — a skill whose model calls another skill 8 times, then
//!   answers: the loop's time against the same 9 model calls made
//!   directly (`Registry::complete`) plus the 8 tool runs made directly
//!   (`Executor::run` of the tool skill); the difference per step is
//!   what the loop adds (target ≤ 1 ms).
//!
//! Run with `cargo bench -p skillkernel-skills --bench skill_exec`; prints
//! a table and one JSON line (also appended to `$BENCH_JSON` when set).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skillkernel_providers::scripted::ScriptedProvider;
use skillkernel_providers::{
    ChatMessage, CompletionRequest, GenerationOptions, ModelsConfig, Registry,
};
use skillkernel_skills::exec::{Executor, RunContext, RunRequest};
use skillkernel_skills::metrics::SkillMetrics;
use skillkernel_skills::model::{
    GenerationOverrides, Origin, Phase, PromptSkill, Resilience, Routing, SkillBody, SkillFormat,
    SkillMeta, Source, WorkflowSkill,
};
use skillkernel_skills::{Skill, Template};
use tokio_util::sync::CancellationToken;

const CALLS: usize = 20_000;
const WARMUP: usize = 2_000;
const WORKFLOW_RUNS: usize = 10;
const PHASE_DELAY: Duration = Duration::from_millis(20);

fn new_skill(name: &str, body: SkillBody) -> Arc<Skill> {
    let meta = SkillMeta {
        name: name.into(),
        version: semver::Version::new(1, 0, 0),
        description: String::new(),
        author: None,
        license: None,
        tags: vec![],
        category: None,
        compatibility: None,
        allowed_tools: vec![],
        metadata: Default::default(),
    };
    Arc::new(Skill {
        meta,
        parameters: vec![],
        dependencies: vec![],
        routing: Routing::default(),
        generation: GenerationOverrides::default(),
        resilience: Resilience::default(),
        body,
        output: None,
        tools: Default::default(),
        source: Source {
            format: SkillFormat::Native,
            path: None,
            origin: Origin::Builtin,
        },
    })
}

fn t(source: &str) -> Template {
    Template::parse(source).expect("a valid template")
}

fn context(provider: Arc<ScriptedProvider>) -> RunContext {
    let config = ModelsConfig {
        default: "m".into(),
        ..ModelsConfig::default()
    };
    RunContext {
        registry: Arc::new(Registry::new(vec![provider], config)),
        default_model: "m".into(),
        options: GenerationOptions::default(),
        sandbox: None,
        session: "test".into(),
        external: None,
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

/// p50 and p95 in µs, to 0.01 µs.
fn summary(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let round = |us: f64| (us * 100.0).round() / 100.0;
    (
        round(percentile(&samples, 0.5)),
        round(percentile(&samples, 0.95)),
    )
}

async fn overhead() -> serde_json::Value {
    let provider = ScriptedProvider::builder("scripted")
        .reply_with(|_| Ok("a short scripted answer of a few words".into()))
        .piece_chars(8)
        .build();
    let ctx = context(provider.clone());
    let executor = Executor::new(Arc::new(SkillMetrics::new()));
    let skill = new_skill(
        "summarize",
        SkillBody::Prompt(PromptSkill {
            system: Some(t("You summarize text.")),
            template: t("Summarize in one line:\n{{ input }}"),
        }),
    );
    let input = "The quick brown fox jumps over the lazy dog. ".repeat(8);
    let request = CompletionRequest {
        model: "m".into(),
        messages: vec![
            ChatMessage::new("system", "You summarize text."),
            ChatMessage::new("user", format!("Summarize in one line:\n{input}")),
        ],
        options: GenerationOptions::default(),
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    };
    let (mut direct, mut executed) = (Vec::with_capacity(CALLS), Vec::with_capacity(CALLS));
    for i in 0..WARMUP + CALLS {
        if i % 1000 == 0 {
            provider.clear_log();
        }
        let started = Instant::now();
        let (_, answer) = ctx
            .registry
            .complete(request.clone(), CancellationToken::new())
            .await
            .expect("the direct call");
        let direct_took = started.elapsed();
        let started = Instant::now();
        let out = executor
            .run(&ctx, RunRequest::new(skill.clone(), input.clone()), |_| {})
            .await
            .expect("the skill run");
        let executed_took = started.elapsed();
        assert_eq!(out.text, answer.text);
        if i >= WARMUP {
            direct.push(direct_took);
            executed.push(executed_took);
        }
    }
    let last = provider.calls().pop().expect("a call");
    assert_eq!(
        last.messages, request.messages,
        "both send the same request"
    );
    let (d50, d95) = summary(direct);
    let (e50, e95) = summary(executed);
    println!("execution overhead ({CALLS} calls each, scripted provider, cache off)");
    println!("  direct Registry::complete   p50 {d50:8.1} µs   p95 {d95:8.1} µs");
    println!("  Executor::run (prompt)      p50 {e50:8.1} µs   p95 {e95:8.1} µs");
    println!(
        "  overhead                    p50 {:8.1} µs   p95 {:8.1} µs   (target ≤ 50 µs)",
        e50 - d50,
        e95 - d95
    );
    serde_json::json!({
        "calls": CALLS,
        "direct_p50_us": d50, "direct_p95_us": d95,
        "executor_p50_us": e50, "executor_p95_us": e95,
        "overhead_p50_us": ((e50 - d50) * 100.0).round() / 100.0,
        "overhead_p95_us": ((e95 - d95) * 100.0).round() / 100.0,
    })
}

/// Ten phases in levels of 4, 3, 2, 1; each reads every phase of the level before.
fn ten_phase_workflow() -> Arc<Skill> {
    let mut phases = Vec::new();
    let mut before: Vec<String> = Vec::new();
    for (level, width) in [4usize, 3, 2, 1].into_iter().enumerate() {
        let this: Vec<String> = (0..width).map(|i| format!("p{level}_{i}")).collect();
        for id in &this {
            let template = before.iter().fold(format!("{id}:"), |acc, d| {
                format!("{acc} {{{{ phases.{d} }}}}")
            });
            phases.push(Phase {
                id: id.clone(),
                name: id.clone(),
                system: None,
                template: t(&template),
                depends_on: before.clone(),
                routing: Routing::default(),
                generation: GenerationOverrides::default(),
                output: None,
            });
        }
        before = this;
    }
    new_skill(
        "ten-phases",
        SkillBody::Workflow(WorkflowSkill {
            phases,
            max_parallel: 4,
            output: "p3_0".into(),
        }),
    )
}

/// µs as ms, to 0.01 ms.
fn ms(us: f64) -> f64 {
    (us / 10.0).round() / 100.0
}

async fn workflow() -> serde_json::Value {
    let provider = ScriptedProvider::builder("scripted")
        .reply_with(|r| {
            Ok(format!(
                "[{} chars]",
                r.messages.last().map_or(0, |m| m.content.len())
            ))
        })
        .delay(PHASE_DELAY)
        .build();
    let ctx = context(provider.clone());
    let executor = Executor::new(Arc::new(SkillMetrics::new()));
    let skill = ten_phase_workflow();
    let mut totals = Vec::with_capacity(WORKFLOW_RUNS);
    for _ in 0..WORKFLOW_RUNS {
        provider.clear_log();
        let started = Instant::now();
        let out = executor
            .run(&ctx, RunRequest::new(skill.clone(), "x"), |_| {})
            .await
            .expect("the workflow run");
        totals.push(started.elapsed());
        assert_eq!(out.phases.len(), 10);
        assert_eq!(provider.max_concurrent(), 4);
    }
    let (t50, t95) = summary(totals);
    let longest = PHASE_DELAY.as_secs_f64() * 4e6;
    let sum = PHASE_DELAY.as_secs_f64() * 10e6;
    println!(
        "10-phase workflow, max_parallel 4, {} ms per call ({WORKFLOW_RUNS} runs)",
        PHASE_DELAY.as_millis()
    );
    println!(
        "  total  p50 {:6.1} ms   p95 {:6.1} ms",
        t50 / 1e3,
        t95 / 1e3
    );
    println!(
        "  longest path {:6.1} ms   sum of calls {:6.1} ms",
        longest / 1e3,
        sum / 1e3
    );
    serde_json::json!({
        "runs": WORKFLOW_RUNS, "phase_delay_ms": PHASE_DELAY.as_millis() as u64,
        "total_p50_ms": ms(t50), "total_p95_ms": ms(t95),
        "longest_path_ms": ms(longest), "sum_ms": ms(sum),
    })
}

const LOOP_STEPS: usize = 8;
const LOOP_RUNS: usize = 300;

async fn tool_loop() -> serde_json::Value {
    use skillkernel_skills::tools::{ToolSource, Toolbox};
    let provider = ScriptedProvider::builder("scripted")
        .reply_with(|r| {
            let results = r.messages.iter().filter(|m| m.role == "tool").count();
            Ok(if r.tools.is_empty() {
                "LOUD".into()
            } else if results < LOOP_STEPS {
                format!("@call shout {{\"input\": \"call {results}\"}}")
            } else {
                "done".into()
            })
        })
        .build();
    let ctx = context(provider.clone());
    let executor = Executor::new(Arc::new(SkillMetrics::new()));
    let shout = new_skill(
        "shout",
        SkillBody::Prompt(PromptSkill {
            system: None,
            template: t("Shout: {{ input }}"),
        }),
    );
    let mut assistant = (*new_skill(
        "assistant",
        SkillBody::Prompt(PromptSkill {
            system: Some(t("You help.")),
            template: t("{{ input }}"),
        }),
    ))
    .clone();
    assistant.tools = Toolbox {
        tools: vec![ToolSource::Skill {
            name: "shout".into(),
            description: None,
        }],
        max_steps: LOOP_STEPS as u32 + 1,
        ..Toolbox::default()
    };
    let assistant = Arc::new(assistant);
    let request = |input: &str| CompletionRequest {
        model: "m".into(),
        messages: vec![ChatMessage::new("user", input)],
        options: GenerationOptions::default(),
        format: None,
        tools: Vec::new(),
        tool_choice: Default::default(),
    };
    let (mut looped, mut direct) = (Vec::new(), Vec::new());
    for i in 0..LOOP_RUNS + 20 {
        provider.clear_log();
        let started = Instant::now();
        let mut req = RunRequest::new(assistant.clone(), "go");
        req.tool_skills = vec![shout.clone()];
        let out = executor.run(&ctx, req, |_| {}).await.expect("the loop");
        let took = started.elapsed();
        assert_eq!(out.tool_steps.len(), LOOP_STEPS);
        let started = Instant::now();
        for _ in 0..=LOOP_STEPS {
            ctx.registry
                .complete(request("go"), CancellationToken::new())
                .await
                .expect("a direct call");
        }
        for _ in 0..LOOP_STEPS {
            executor
                .run(&ctx, RunRequest::new(shout.clone(), "x"), |_| {})
                .await
                .expect("a direct tool run");
        }
        let parts = started.elapsed();
        if i >= 20 {
            looped.push(took);
            direct.push(parts);
        }
    }
    let (l50, l95) = summary(looped);
    let (d50, d95) = summary(direct);
    let per_step = (l50 - d50) / LOOP_STEPS as f64;
    println!("tool loop, {LOOP_STEPS} calls of a skill then an answer ({LOOP_RUNS} runs)");
    println!("  loop          p50 {l50:8.1} µs   p95 {l95:8.1} µs");
    println!("  parts direct  p50 {d50:8.1} µs   p95 {d95:8.1} µs");
    println!("  added per step {per_step:6.1} µs");
    serde_json::json!({
        "steps": LOOP_STEPS, "runs": LOOP_RUNS,
        "loop_p50_us": l50, "loop_p95_us": l95,
        "direct_p50_us": d50, "direct_p95_us": d95,
        "added_per_step_us": (per_step * 100.0).round() / 100.0,
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let overhead = runtime.block_on(overhead());
    let workflow = runtime.block_on(workflow());
    let tool_loop = runtime.block_on(tool_loop());
    let line = serde_json::json!({
        "bench": "skill_exec", "overhead": overhead, "workflow": workflow, "tool_loop": tool_loop
    });
    println!("{line}");
    if let Ok(path) = std::env::var("BENCH_JSON") {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = appended {
            eprintln!("cannot append to {path}: {e}");
        }
    }
}
