//! Embedded inference with Candle: GGUF models from a model directory, run
//! in-process on the backend's own thread.
//!
//! Models are named by file: `SmolLM2-135M-Instruct.Q4_1.gguf` answers to
//! its lower-cased stem and to any unique prefix of it (`smollm2-135m`).
//! A model is loaded on first use and stays loaded. One inference thread
//! runs one generation at a time; the IO runtime only ever waits on
//! channels. A model's KV cache (the conversation so far, so that a next
//! turn runs only its new tokens) is paid for only while used: it is
//! stored as f16 by default (8-bit on request), bounded by the context window, dropped after
//! `kv_cache_idle_secs` without a turn or when the kernel starts a new
//! conversation ([`Provider::forget_context`]), and rebuilt from the
//! conversation on the next turn.

mod constrain;
mod detok;
mod engine;
mod error;
pub mod gguf;
mod model;
mod pool;
pub mod pull;
mod quant;
mod simd;
mod template;
mod tokenizer;
mod tool_turns;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use constrain::check as check_output_format;
pub use engine::{KvFigures, LoadedModel};
pub use gguf::{Architecture, GgufFile};
pub use model::{KvError, KvType};
pub use tokenizer::load as load_tokenizer;

use crate::{
    CompletionRequest, ModelInfo, Provider, ProviderError, ProviderStatus, PullStream, StreamEvent,
    TokenStream,
};

/// The backend name in model specifiers (`name@candle`).
pub const BACKEND: &str = "candle";

struct Job {
    request: CompletionRequest,
    path: PathBuf,
    name: String,
    cancel: CancellationToken,
    events: mpsc::UnboundedSender<Result<StreamEvent, ProviderError>>,
}

/// What the inference thread is asked to do.
enum Work {
    Generate(Box<Job>),
    /// Drop every model's KV cache (a new conversation began).
    Forget,
}

/// How the inference thread runs models.
#[derive(Clone, Copy)]
struct Settings {
    threads: usize,
    kv_type: KvType,
    /// A KV cache unused this long is dropped; `None` keeps it.
    kv_idle: Option<Duration>,
}

/// Each loaded model's KV cache, as the inference thread last saw it.
type Loaded = Arc<Mutex<BTreeMap<String, KvFigures>>>;

/// The Candle backend.
pub struct CandleProvider {
    model_dir: PathBuf,
    jobs: Mutex<std_mpsc::Sender<Work>>,
    loaded: Loaded,
    hub_url: String,
    catalog: BTreeMap<String, String>,
}

impl CandleProvider {
    /// A backend serving the GGUF files in `model_dir`, with one inference
    /// thread per CPU.
    pub fn new(model_dir: impl Into<PathBuf>) -> Result<Self, ProviderError> {
        Self::with_threads(model_dir, None)
    }

    /// A backend running inference on `threads` threads (default: one per
    /// CPU).
    pub fn with_threads(
        model_dir: impl Into<PathBuf>,
        threads: Option<usize>,
    ) -> Result<Self, ProviderError> {
        let config = crate::config::CandleConfig {
            threads: threads.unwrap_or(0),
            ..crate::config::CandleConfig::default()
        };
        Self::with_config(model_dir, &config)
    }

    /// A backend over `model_dir` with the threads, KV cache, hub and
    /// catalog of `config`.
    pub fn with_config(
        model_dir: impl Into<PathBuf>,
        config: &crate::config::CandleConfig,
    ) -> Result<Self, ProviderError> {
        let settings = Settings {
            threads: Some(config.threads)
                .filter(|n| *n > 0)
                .unwrap_or_else(engine::default_threads),
            kv_type: config.kv_cache,
            kv_idle: Some(Duration::from_secs(config.kv_cache_idle_secs)).filter(|d| !d.is_zero()),
        };
        let (tx, rx) = std_mpsc::channel::<Work>();
        let loaded = Loaded::default();
        let figures = loaded.clone();
        std::thread::Builder::new()
            .name("candle-inference".into())
            .spawn(move || inference_thread(rx, settings, figures))
            .map_err(|e| ProviderError::Other(format!("cannot start the inference thread: {e}")))?;
        Ok(CandleProvider {
            model_dir: model_dir.into(),
            jobs: Mutex::new(tx),
            loaded,
            hub_url: config.hub_url.clone(),
            catalog: config
                .catalog
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.clone()))
                .collect(),
        })
    }

    /// Each loaded model's KV cache, by model name.
    pub fn kv_caches(&self) -> BTreeMap<String, KvFigures> {
        self.loaded.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn send(&self, work: Work) -> Result<(), ProviderError> {
        self.jobs
            .lock()
            .map_err(|_| ProviderError::Other("inference thread lock poisoned".into()))?
            .send(work)
            .map_err(|_| ProviderError::Other("the inference thread has stopped".into()))
    }

    pub fn model_dir(&self) -> &Path {
        &self.model_dir
    }

    /// GGUF files in the model directory, by model name.
    fn files(&self) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.model_dir) else {
            return Vec::new();
        };
        let mut files: Vec<(String, PathBuf)> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
            })
            .filter_map(|p| Some((model_name(&p)?, p)))
            .collect();
        files.sort();
        files
    }

    /// The file for `name`: an exact name, else a unique prefix.
    pub fn resolve(&self, name: &str) -> Result<(String, PathBuf), ProviderError> {
        let wanted = name.to_lowercase();
        let files = self.files();
        if let Some(hit) = files.iter().find(|(n, _)| *n == wanted) {
            return Ok(hit.clone());
        }
        let matches: Vec<_> = files
            .iter()
            .filter(|(n, _)| n.starts_with(&wanted))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ProviderError::ModelNotFound {
                model: name.to_owned(),
                hint: format!(
                    "no GGUF file for it in {}; run packaging/fetch-default-model for the default model, or copy a .gguf file there",
                    self.model_dir.display()
                ),
            }),
            many => Err(ProviderError::ModelNotFound {
                model: name.to_owned(),
                hint: format!(
                    "the name is ambiguous: {}",
                    many.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }

    /// Copies a local GGUF file into the model directory as `name` (default:
    /// the file's own name), after checking it is a complete, supported
    /// model. The copy is written aside and renamed into place, so a failed
    /// import leaves no half file behind as a model.
    pub async fn import_file(
        &self,
        source: &Path,
        name: Option<&str>,
    ) -> Result<ModelInfo, ProviderError> {
        let source = source.to_owned();
        let dir = self.model_dir.clone();
        let name = name.map(str::to_lowercase);
        tokio::task::spawn_blocking(move || {
            GgufFile::open(&source)?;
            let stem = match name {
                Some(n) => n,
                None => model_name(&source).ok_or_else(|| gguf::invalid(&source, "it has no file name"))?,
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| ProviderError::Other(format!("cannot create {}: {e}", dir.display())))?;
            let target = dir.join(format!("{stem}.gguf"));
            if target.exists() {
                return Err(ProviderError::Other(format!(
                    "a model named `{stem}` already exists ({}); remove it first or import under another name",
                    target.display()
                )));
            }
            let partial = dir.join(format!(".{stem}.gguf.partial"));
            let copied = std::fs::copy(&source, &partial).and_then(|_| std::fs::rename(&partial, &target));
            if let Err(e) = copied {
                let _ = std::fs::remove_file(&partial);
                return Err(ProviderError::Other(format!(
                    "cannot copy {} into {}: {e}",
                    source.display(),
                    dir.display()
                )));
            }
            Self::info_for(&stem, &target)
        })
        .await
        .map_err(|e| ProviderError::Other(e.to_string()))?
    }

    fn info_for(name: &str, path: &Path) -> Result<ModelInfo, ProviderError> {
        let gguf = GgufFile::open(path)?;
        Ok(ModelInfo {
            name: name.to_owned(),
            backend: BACKEND.into(),
            size_bytes: std::fs::metadata(path).ok().map(|m| m.len()),
            family: Some(gguf.architecture.as_str().to_owned()),
            quantization: gguf.quantization(),
            context_length: gguf.context_length(),
        })
    }
}

/// A model's name: the file stem, lower-cased.
pub fn model_name(path: &Path) -> Option<String> {
    path.file_stem()?.to_str().map(str::to_lowercase)
}

/// A loaded model and when it last generated.
struct Resident {
    model: LoadedModel,
    last_used: Instant,
}

/// Runs jobs one at a time, keeping loaded models between them and
/// dropping KV caches left unused past `settings.kv_idle`.
fn inference_thread(jobs: std_mpsc::Receiver<Work>, settings: Settings, figures: Loaded) {
    let mut loaded: HashMap<PathBuf, Resident> = HashMap::new();
    loop {
        // Wake for the first cache to go idle, if any holds positions.
        let next_idle = settings.kv_idle.and_then(|idle| {
            loaded
                .values()
                .filter(|r| r.model.kv_figures().positions > 0)
                .map(|r| {
                    r.last_used.checked_add(idle).map_or(Duration::MAX, |at| {
                        at.saturating_duration_since(Instant::now())
                    })
                })
                .min()
        });
        let work = match next_idle {
            Some(wait) => match jobs.recv_timeout(wait) {
                Ok(work) => Some(work),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match jobs.recv() {
                Ok(work) => Some(work),
                Err(_) => break,
            },
        };
        let mut dropped = false;
        match work {
            Some(Work::Generate(job)) => generate(*job, &mut loaded, settings, &figures),
            Some(Work::Forget) => {
                for r in loaded.values_mut() {
                    dropped |= drop_cache(r, "a new conversation began");
                }
            }
            None => {}
        }
        // Swept after any work too: a steady stream of jobs for one model
        // must not keep another's idle cache alive.
        if let Some(idle) = settings.kv_idle {
            for r in loaded.values_mut() {
                if r.last_used.elapsed() >= idle {
                    dropped |= drop_cache(r, "it was idle");
                }
            }
        }
        // (A generation publishes its own figures, before its last event.)
        if dropped {
            publish(&loaded, &figures);
        }
    }
}

/// Puts each loaded model's KV cache figures where `status` reads them.
fn publish(loaded: &HashMap<PathBuf, Resident>, figures: &Loaded) {
    if let Ok(mut f) = figures.lock() {
        *f = loaded
            .values()
            .map(|r| (r.model.name.clone(), r.model.kv_figures()))
            .collect();
    }
}

/// Drops `r`'s KV cache; whether there was one.
fn drop_cache(r: &mut Resident, why: &str) -> bool {
    let figures = r.model.kv_figures();
    if figures.positions == 0 {
        return false;
    }
    r.model.clear_cache();
    tracing::info!(
        model = %r.model.name,
        positions = figures.positions,
        mib = figures.bytes as f64 / (1 << 20) as f64,
        idle_secs = r.last_used.elapsed().as_secs(),
        "dropped the KV cache: {why}"
    );
    true
}

fn generate(
    job: Job,
    loaded: &mut HashMap<PathBuf, Resident>,
    settings: Settings,
    figures: &Loaded,
) {
    if job.cancel.is_cancelled() {
        let _ = job.events.send(Err(ProviderError::Cancelled));
        return;
    }
    if !loaded.contains_key(&job.path) {
        let started = Instant::now();
        let result = GgufFile::open(&job.path)
            .and_then(|g| LoadedModel::load_with_threads(&job.name, g, settings.threads));
        match result {
            Ok(mut model) => {
                model.set_kv_type(settings.kv_type);
                tracing::info!(model = %job.name, ms = started.elapsed().as_millis() as u64, "model loaded");
                let resident = Resident {
                    model,
                    last_used: Instant::now(),
                };
                loaded.insert(job.path.clone(), resident);
            }
            Err(e) => {
                let _ = job.events.send(Err(e));
                return;
            }
        }
    }
    let Some(resident) = loaded.get_mut(&job.path) else {
        return;
    };
    let events = job.events.clone();
    let result = if job.request.tools.is_empty() {
        let mut on_text = |piece: &str| {
            let _ = events.send(Ok(StreamEvent::Text(piece.to_owned())));
        };
        resident.model.generate_as(
            &job.request.messages,
            &job.request.options,
            job.request.format.as_ref(),
            &job.cancel,
            &mut on_text,
        )
    } else {
        // A tool turn: JSON held to the call schema, read when complete.
        let (messages, format) = tool_turns::prepare(&job.request);
        // No repeat penalty: a tool turn copies names, paths and results
        // from the conversation, which the penalty would steer it away from.
        let options = crate::GenerationOptions {
            repeat_penalty: None,
            ..job.request.options.clone()
        };
        let mut written = String::new();
        let result = resident.model.generate_as(
            &messages,
            &options,
            Some(&format),
            &job.cancel,
            &mut |piece| written.push_str(piece),
        );
        if result.is_ok() {
            let earlier: usize = job
                .request
                .messages
                .iter()
                .map(|m| m.tool_calls.len())
                .sum();
            let event = match tool_turns::interpret(&written, earlier, job.request.format.is_some())
            {
                tool_turns::Turn::Call(call) => StreamEvent::ToolCall(call),
                tool_turns::Turn::Answer(text) => StreamEvent::Text(text),
            };
            let _ = events.send(Ok(event));
        }
        result
    };
    resident.last_used = Instant::now();
    // Before the last event: a caller that has its answer sees the cache.
    publish(loaded, figures);
    let _ = job.events.send(result.map(StreamEvent::Done));
}

/// `12 positions, 0.4 MiB q8_0`, for status lines.
fn describe(f: &KvFigures) -> String {
    let kind = f.kind.map_or("f32, Candle's".to_owned(), |k| k.to_string());
    if f.positions == 0 {
        return format!("KV cache empty ({kind})");
    }
    format!(
        "KV cache {} of {} positions, {:.1} MiB {kind}",
        f.positions,
        f.context_length,
        f.bytes as f64 / (1 << 20) as f64
    )
}

#[async_trait]
impl Provider for CandleProvider {
    fn backend(&self) -> &str {
        BACKEND
    }

    async fn list(&self) -> Result<Vec<ModelInfo>, ProviderError> {
        let files = self.files();
        tokio::task::spawn_blocking(move || {
            files
                .iter()
                .filter_map(|(name, path)| match Self::info_for(name, path) {
                    Ok(info) => Some(info),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping unusable model file");
                        None
                    }
                })
                .collect()
        })
        .await
        .map_err(|e| ProviderError::Other(e.to_string()))
    }

    async fn info(&self, model: &str) -> Result<ModelInfo, ProviderError> {
        let (name, path) = self.resolve(model)?;
        tokio::task::spawn_blocking(move || Self::info_for(&name, &path))
            .await
            .map_err(|e| ProviderError::Other(e.to_string()))?
    }

    async fn has_model(&self, model: &str) -> Result<String, ProviderError> {
        self.resolve(model).map(|(name, _)| name)
    }

    async fn pull(&self, model: &str) -> Result<PullStream, ProviderError> {
        let path = self
            .catalog
            .get(&model.to_lowercase())
            .map(String::as_str)
            .unwrap_or(model);
        let target = pull::HubFile::parse(path).ok_or_else(|| ProviderError::ModelNotFound {
            model: model.to_owned(),
            hint: format!(
                "pull takes ORG/REPO/FILE.gguf from the hub at {} or a name from [models.candle.catalog] in the config",
                self.hub_url
            ),
        })?;
        Ok(pull::start(&self.hub_url, target, &self.model_dir))
    }

    async fn import(&self, source: &Path, name: Option<&str>) -> Result<ModelInfo, ProviderError> {
        self.import_file(source, name).await
    }

    async fn remove(&self, model: &str) -> Result<(), ProviderError> {
        let (_, path) = self.resolve(model)?;
        std::fs::remove_file(&path)
            .map_err(|e| ProviderError::Other(format!("cannot remove {}: {e}", path.display())))
    }

    async fn status(&self) -> ProviderStatus {
        let count = self.files().len();
        let mut detail = format!("{count} model file(s) in {}", self.model_dir.display());
        for (name, figures) in self.kv_caches() {
            detail.push_str(&format!("; {name} loaded, {}", describe(&figures)));
        }
        ProviderStatus {
            backend: BACKEND.into(),
            available: count > 0,
            version: Some(
                concat!("embedded (skillkernel ", env!("CARGO_PKG_VERSION"), ")").to_owned(),
            ),
            detail,
        }
    }

    async fn forget_context(&self) {
        if let Err(e) = self.send(Work::Forget) {
            tracing::warn!("cannot drop the KV caches: {e}");
        }
    }

    async fn stream(
        &self,
        request: CompletionRequest,
        cancel: CancellationToken,
    ) -> Result<TokenStream, ProviderError> {
        let (name, path) = self.resolve(&request.model)?;
        let (events, rx) = mpsc::unbounded_channel();
        let job = Job {
            request,
            path,
            name,
            cancel,
            events,
        };
        self.send(Work::Generate(Box::new(job)))?;
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }
}
