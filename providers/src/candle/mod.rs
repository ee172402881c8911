//! Embedded inference with Candle: GGUF models from a model directory, run
//! in-process on the backend's own thread.
//!
//! Models are named by file: `SmolLM2-135M-Instruct.Q4_1.gguf` answers to
//! its lower-cased stem and to any unique prefix of it (`smollm2-135m`).
//! A model is loaded on first use and stays loaded. One inference thread
//! runs every generation ([`scheduler`]): up to `max_sequences` per model
//! share each forward pass (continuous batching), later ones queue; the
//! IO runtime only ever waits on channels. Each generation has its own KV
//! cache, stored as f16 by default (8-bit on request) and bounded by the
//! context window; when it ends, the cache joins the model's prefix cache
//! ([`prefix`]), so a later prompt that starts alike (the conversation so
//! far, a skill's fixed head) runs only its new tokens. Cached prefixes
//! are dropped after `kv_cache_idle_secs` unused, when the kernel starts
//! a new conversation ([`Provider::forget_context`]), and under memory
//! pressure before a request is refused.

mod constrain;
mod detok;
mod engine;
mod error;
mod generation;
pub mod gguf;
mod model;
mod pool;
mod prefix;
pub mod pull;
mod quant;
mod scheduler;
mod simd;
mod template;
mod tokenizer;
mod tool_turns;

use std::collections::BTreeMap;
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

use scheduler::{Job, Settings, Work};

use crate::{
    CompletionRequest, ModelInfo, Provider, ProviderError, ProviderStatus, PullStream, TokenStream,
};

/// The backend name in model specifiers (`name@candle`).
pub const BACKEND: &str = "candle";

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
            max_sequences: config.max_sequences.max(1),
            // 0 sets no budget (the machine's free memory still bounds it),
            // as 0 keeps idle caches for `kv_cache_idle_secs`.
            kv_budget: match config.kv_budget_mib {
                0 => u64::MAX,
                mib => mib.saturating_mul(1 << 20),
            },
            prefix_cache: config.prefix_cache_mib.saturating_mul(1 << 20),
        };
        let (tx, rx) = std_mpsc::channel::<Work>();
        let loaded = Loaded::default();
        let figures = loaded.clone();
        std::thread::Builder::new()
            .name("candle-inference".into())
            .spawn(move || scheduler::run(rx, settings, figures))
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

/// `2 running, 3 cached prefixes: KV cache 812 positions, 18.4 MiB
/// q8_0`, for status lines.
fn describe(f: &KvFigures) -> String {
    let kind = f.kind.map_or("f32, Candle's".to_owned(), |k| k.to_string());
    let running = match f.sequences {
        0 => String::new(),
        n => format!("{n} generation(s) running, "),
    };
    if f.positions == 0 {
        return format!("{running}KV cache empty ({kind})");
    }
    format!(
        "{running}{} cached prefix(es); KV cache {} positions (window {}), {:.1} MiB {kind}",
        f.prefixes,
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
            arrived: Instant::now(),
            queued: Instant::now(),
        };
        self.send(Work::Generate(Box::new(job)))?;
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }
}
