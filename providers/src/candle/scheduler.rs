//! The inference thread: continuous batching over every loaded model.
//!
//! Requests arrive on a channel at any time. Each model has up to
//! `max_sequences` generations running; they share every forward pass
//! ([`LoadedModel::step`]), one token each per step, with prompts filling
//! the rest of a step's budget, so none starves. A request beyond the
//! bound waits in the model's queue, in order, and joins between two
//! steps when a slot frees; its wait is reported as `queue_ms`. Admission
//! also checks memory: a generation needs room in the KV budget for its
//! prompt and `max_tokens` (and the machine must have it free); cached
//! prefixes are dropped to make room, a request that fits once running
//! generations end waits at the head of its queue, and one that cannot
//! fit even alone is refused with what to change.
//!
//! Between steps the thread takes new work without blocking, ends
//! generations whose caller cancelled or went away, and streams each
//! one's text as soon as it is decoded. With nothing running it sleeps
//! until work arrives or a cached prefix goes idle.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::engine::{KvFigures, LoadedModel};
use super::generation::Generation;
use super::gguf::GgufFile;
use super::model::KvType;
use super::tool_turns;
use super::Loaded;
use crate::{CompletionRequest, ProviderError, StreamEvent};

const MIB: u64 = 1 << 20;

/// A request for a generation.
pub struct Job {
    pub request: CompletionRequest,
    pub path: PathBuf,
    pub name: String,
    pub cancel: CancellationToken,
    pub events: mpsc::UnboundedSender<Result<StreamEvent, ProviderError>>,
    pub arrived: Instant,
    /// When it joined its model's queue (after any load).
    pub queued: Instant,
}

/// What the inference thread is asked to do.
pub enum Work {
    Generate(Box<Job>),
    /// Drop every model's cached prefixes (a new conversation began).
    Forget,
}

/// How the inference thread runs models.
#[derive(Clone, Copy)]
pub struct Settings {
    pub threads: usize,
    pub kv_type: KvType,
    /// A cached prefix unused this long is dropped; `None` keeps it.
    pub kv_idle: Option<Duration>,
    /// Generations per model sharing a forward pass.
    pub max_sequences: usize,
    /// Bytes for running generations' KV caches and the prefix caches.
    pub kv_budget: u64,
    /// Bytes for each model's prefix cache.
    pub prefix_cache: u64,
}

/// Where a generation's text goes.
enum Sink {
    /// Streamed as it is decoded.
    Stream,
    /// A tool turn: JSON held to the call schema, read when complete.
    Tool { written: String, earlier: usize },
}

/// A generation in a slot.
struct Running {
    job: Box<Job>,
    generation: Generation,
    sink: Sink,
    /// KV bytes set aside for it: its prompt and `max_tokens`.
    reserved: u64,
}

/// A loaded model with its running generations and its queue.
struct Slot {
    model: LoadedModel,
    running: Vec<Running>,
    waiting: VecDeque<Box<Job>>,
    /// The head of the queue waits for running generations to release
    /// KV memory: admission is retried only after one ends.
    memory_wait: bool,
}

impl Slot {
    /// Generations it runs together.
    fn bound(&self, settings: Settings) -> usize {
        if self.model.batches() {
            settings.max_sequences.max(1)
        } else {
            1
        }
    }

    fn busy(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    fn figures(&self) -> KvFigures {
        let mut f = self.model.kv_figures();
        for r in &self.running {
            if let Some(seq) = &r.generation.seq {
                f.positions += seq.len();
                f.bytes += seq.bytes();
            }
        }
        f.sequences = self.running.len();
        f
    }
}

/// A generation that ended, with the events still to send: they go out
/// after the figures are published, so a caller holding its answer sees
/// the cache as it now is.
type Ended = (Box<Job>, Vec<Result<StreamEvent, ProviderError>>);

/// Runs generations for every model until the channel closes.
pub fn run(jobs: std_mpsc::Receiver<Work>, settings: Settings, figures: Loaded) {
    let mut slots: HashMap<PathBuf, Slot> = HashMap::new();
    // Whether a generation ended (or caches were dropped) since the last
    // admission: a request waiting for memory may fit now.
    let mut released = false;
    // The provider is gone: finish what runs and waits, then stop.
    let mut closing = false;
    loop {
        let busy = slots.values().any(Slot::busy);
        if closing && !busy {
            break;
        }
        let first = if busy {
            match jobs.try_recv() {
                Ok(work) => Some(work),
                Err(std_mpsc::TryRecvError::Empty) => None,
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    closing = true;
                    None
                }
            }
        } else {
            let wait = settings.kv_idle.and_then(|idle| next_idle(&slots, idle));
            match wait {
                Some(wait) => match jobs.recv_timeout(wait) {
                    Ok(work) => Some(work),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match jobs.recv() {
                    Ok(work) => Some(work),
                    Err(_) => break,
                },
            }
        };
        let mut changed = false;
        let mut ended: Vec<Ended> = Vec::new();
        let mut work = first;
        while let Some(w) = work {
            changed |= take(w, &mut slots, settings, &mut ended);
            work = jobs.try_recv().ok();
        }
        for slot in slots.values_mut() {
            changed |= drop_abandoned(slot, &mut ended);
        }
        let paths: Vec<PathBuf> = slots.keys().cloned().collect();
        for path in &paths {
            changed |= admit(path, &mut slots, settings, released, &mut ended);
        }
        released = false;
        for slot in slots.values_mut() {
            if !slot.running.is_empty() {
                let before = ended.len();
                step(slot, &mut ended);
                released |= ended.len() > before;
                changed = true;
            }
        }
        if let Some(idle) = settings.kv_idle {
            for slot in slots.values_mut() {
                let dropped = slot.model.drop_idle(idle);
                if dropped > 0 {
                    tracing::info!(model = %slot.model.name, positions = dropped, "dropped cached prefixes: they were idle");
                    changed = true;
                }
            }
        }
        if changed || !ended.is_empty() {
            publish(&slots, &figures);
        }
        for (job, events) in ended {
            for event in events {
                let _ = job.events.send(event);
            }
        }
    }
}

/// Ends queued requests whose caller cancelled or went away, so they
/// hear of it now rather than when a slot frees; whether any did.
fn drop_abandoned(slot: &mut Slot, ended: &mut Vec<Ended>) -> bool {
    let before = slot.waiting.len();
    let (gone, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut slot.waiting)
        .into_iter()
        .partition(|job| job.cancel.is_cancelled() || job.events.is_closed());
    slot.waiting = kept;
    for job in gone {
        ended.push((job, vec![Err(ProviderError::Cancelled)]));
    }
    slot.waiting.len() != before
}

/// How long until the first cached prefix goes idle, if any is held.
fn next_idle(slots: &HashMap<PathBuf, Slot>, idle: Duration) -> Option<Duration> {
    slots
        .values()
        .filter_map(|s| s.model.cache_last_used())
        .map(|used| {
            used.checked_add(idle).map_or(Duration::MAX, |at| {
                at.saturating_duration_since(Instant::now())
            })
        })
        .min()
}

/// Takes one piece of work; whether the figures changed.
fn take(
    work: Work,
    slots: &mut HashMap<PathBuf, Slot>,
    settings: Settings,
    ended: &mut Vec<Ended>,
) -> bool {
    match work {
        Work::Forget => {
            let mut changed = false;
            for slot in slots.values_mut() {
                let f = slot.model.kv_figures();
                // Always: running generations must not put their caches
                // back, even when nothing is cached yet.
                slot.model.clear_cache();
                if f.positions > 0 {
                    tracing::info!(model = %slot.model.name, positions = f.positions, mib = f.bytes as f64 / MIB as f64, "dropped cached prefixes: a new conversation began");
                    changed = true;
                }
            }
            changed
        }
        Work::Generate(mut job) => {
            if job.cancel.is_cancelled() {
                ended.push((job, vec![Err(ProviderError::Cancelled)]));
                return false;
            }
            if !slots.contains_key(&job.path) {
                match load(&job, settings) {
                    Ok(model) => {
                        let slot = Slot {
                            model,
                            running: Vec::new(),
                            waiting: VecDeque::new(),
                            memory_wait: false,
                        };
                        slots.insert(job.path.clone(), slot);
                    }
                    Err(e) => {
                        ended.push((job, vec![Err(e)]));
                        return false;
                    }
                }
            }
            let Some(slot) = slots.get_mut(&job.path) else {
                return false;
            };
            let bound = slot.bound(settings);
            if slot.running.len() + slot.waiting.len() >= bound {
                tracing::info!(
                    model = %slot.model.name,
                    running = slot.running.len(),
                    ahead = slot.waiting.len(),
                    "generation queued: the model runs {bound} at a time"
                );
            }
            job.queued = Instant::now();
            slot.waiting.push_back(job);
            true
        }
    }
}

fn load(job: &Job, settings: Settings) -> Result<LoadedModel, ProviderError> {
    let started = Instant::now();
    let mut model = GgufFile::open(&job.path)
        .and_then(|g| LoadedModel::load_with_threads(&job.name, g, settings.threads))?;
    model.set_kv_type(settings.kv_type);
    model.set_prefix_cache_limit(settings.prefix_cache);
    tracing::info!(model = %job.name, ms = started.elapsed().as_millis() as u64, "model loaded");
    Ok(model)
}

/// Drops the least recently used cached prefix of any model; the bytes
/// freed (0 when none is left).
fn evict_one(slots: &mut HashMap<PathBuf, Slot>) -> u64 {
    let oldest = slots
        .values_mut()
        .filter_map(|s| {
            let used = s.model.prefix_cache().oldest()?;
            Some((used, s))
        })
        .min_by_key(|(used, _)| *used);
    oldest.map_or(0, |(_, s)| s.model.prefix_cache().evict_oldest())
}

/// Memory the machine has free for new allocations, if it says.
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What the machine keeps free however much KV memory is wanted.
const MEM_RESERVE: u64 = 256 * MIB;

/// Starts queued generations of the model at `path` while it has free
/// slots; whether any started or was refused.
fn admit(
    path: &PathBuf,
    slots: &mut HashMap<PathBuf, Slot>,
    settings: Settings,
    released: bool,
    ended: &mut Vec<Ended>,
) -> bool {
    let mut changed = false;
    loop {
        let Some(slot) = slots.get_mut(path) else {
            return changed;
        };
        if slot.memory_wait && !released {
            return changed;
        }
        slot.memory_wait = false;
        if slot.running.len() >= slot.bound(settings) {
            return changed;
        }
        let Some(job) = slot.waiting.pop_front() else {
            return changed;
        };
        changed = true;
        if job.cancel.is_cancelled() {
            ended.push((job, vec![Err(ProviderError::Cancelled)]));
            continue;
        }
        let (messages, format, options, sink) = if job.request.tools.is_empty() {
            (
                job.request.messages.clone(),
                job.request.format.clone(),
                job.request.options.clone(),
                Sink::Stream,
            )
        } else {
            let (messages, format) = tool_turns::prepare(&job.request);
            // No repeat penalty: a tool turn copies names, paths and
            // results from the conversation, which the penalty would
            // steer it away from.
            let options = crate::GenerationOptions {
                repeat_penalty: None,
                ..job.request.options.clone()
            };
            let earlier = job
                .request
                .messages
                .iter()
                .map(|m| m.tool_calls.len())
                .sum();
            let sink = Sink::Tool {
                written: String::new(),
                earlier,
            };
            (messages, Some(format), options, sink)
        };
        let begun = slot
            .model
            .begin(&messages, &options, format.as_ref(), job.arrived);
        let begun = begun.map(|g| g.queued_since(job.queued));
        let generation = match begun {
            Ok(g) => g,
            Err(e) => {
                ended.push((job, vec![Err(e)]));
                continue;
            }
        };
        let per_position = slot.model.kv_bytes_per_position();
        let positions = (generation.prompt_len() + options.max_tokens as usize)
            .min(slot.model.context_length());
        let need = per_position * positions as u64;
        let name = slot.model.name.clone();
        let room = make_room(slots, need, settings.kv_budget, &name);
        let Some(slot) = slots.get_mut(path) else {
            return changed;
        };
        match room {
            Room::Made => {}
            Room::Wait => {
                // It fits once running generations end: first in line.
                slot.model.abandon(generation);
                slot.waiting.push_front(job);
                slot.memory_wait = true;
                tracing::info!(model = %name, mib = need as f64 / MIB as f64, "generation waits for KV memory held by running ones");
                return changed;
            }
            Room::Refused(e) => {
                slot.model.abandon(generation);
                ended.push((job, vec![Err(e)]));
                continue;
            }
        }
        let queue_ms = generation.stats().queue_ms;
        if queue_ms > 50.0 {
            tracing::info!(model = %name, queue_ms = queue_ms.round(), "queued generation admitted");
        }
        slot.running.push(Running {
            job,
            generation,
            sink,
            reserved: need,
        });
    }
}

/// Whether a generation can start.
enum Room {
    /// Its KV memory is available (cached prefixes may have been dropped).
    Made,
    /// Not now, but once running generations end.
    Wait,
    /// Not while the budget and the machine are what they are.
    Refused(ProviderError),
}

/// Makes `need` bytes of KV memory available within `budget` and the
/// machine's free memory, dropping cached prefixes (least recently used
/// first) when that is enough.
fn make_room(slots: &mut HashMap<PathBuf, Slot>, need: u64, budget: u64, model: &str) -> Room {
    if need == 0 {
        return Room::Made;
    }
    let running = || slots.values().flat_map(|s| &s.running);
    let count = running().count();
    let reserved: u64 = running().map(|r| r.reserved).sum();
    // What running generations set aside but have not written yet: the
    // machine's free memory does not show it as taken.
    let unwritten: u64 = running()
        .map(|r| {
            let written = r.generation.seq.as_ref().map_or(0, |s| s.bytes());
            r.reserved.saturating_sub(written)
        })
        .sum();
    let prefixes: u64 = slots.values().map(|s| s.model.kv_figures().bytes).sum();
    let free = || mem_available().map(|f| f.saturating_sub(unwritten));
    let refuse = |why: String| {
        Room::Refused(ProviderError::Unavailable {
            backend: super::BACKEND.into(),
            reason: format!(
                "not enough memory for another generation on {model}: it needs {} MiB of KV cache for its prompt and max_tokens; {why}. Ask for fewer max_tokens, or raise [models.candle] kv_budget_mib",
                need.div_ceil(MIB),
            ),
        })
    };
    // What dropping every cached prefix cannot help with.
    if reserved + need > budget {
        if count > 0 && need <= budget {
            return Room::Wait;
        }
        return refuse(format!(
            "{count} running generation(s) hold {} MiB of the {} MiB budget",
            reserved.div_ceil(MIB),
            budget / MIB
        ));
    }
    if free().is_some_and(|f| f + prefixes < need + MEM_RESERVE) {
        if count > 0 {
            return Room::Wait;
        }
        let f = free().unwrap_or(0);
        return refuse(format!("the machine has {} MiB free", f / MIB));
    }
    let fits = |slots: &HashMap<PathBuf, Slot>| {
        let in_use: u64 = slots
            .values()
            .map(|s| s.model.kv_figures().bytes)
            .sum::<u64>()
            + reserved;
        let in_memory = free().is_none_or(|f| f >= need + MEM_RESERVE);
        in_use + need <= budget && in_memory
    };
    let mut freed = 0;
    while !fits(slots) {
        let bytes = evict_one(slots);
        if bytes == 0 {
            // The machine's figure moved meanwhile.
            return if count > 0 {
                Room::Wait
            } else {
                refuse("the machine is short of memory".into())
            };
        }
        freed += bytes;
    }
    if freed > 0 {
        tracing::info!(
            model,
            mib = freed as f64 / MIB as f64,
            "dropped cached prefixes to make room for a generation"
        );
    }
    Room::Made
}

/// One forward pass for the slot's running generations; their text goes
/// out, and those that ended are moved to `ended`.
fn step(slot: &mut Slot, ended: &mut Vec<Ended>) {
    for r in &mut slot.running {
        // A caller that went away cancels (its stream was dropped).
        if r.job.cancel.is_cancelled() || r.job.events.is_closed() {
            r.generation.cancel();
        }
    }
    {
        let mut gens: Vec<&mut Generation> =
            slot.running.iter_mut().map(|r| &mut r.generation).collect();
        slot.model.step(&mut gens);
    }
    for r in &mut slot.running {
        let text = r.generation.take_text();
        if text.is_empty() {
            continue;
        }
        match &mut r.sink {
            Sink::Stream => {
                let _ = r.job.events.send(Ok(StreamEvent::Text(text)));
            }
            Sink::Tool { written, .. } => written.push_str(&text),
        }
    }
    let mut i = 0;
    while i < slot.running.len() {
        if !slot.running[i].generation.is_finished() {
            i += 1;
            continue;
        }
        let r = slot.running.remove(i);
        let typed = r.job.request.format.is_some();
        let result = slot.model.end(r.generation);
        let mut events = Vec::new();
        if let (Ok(_), Sink::Tool { written, earlier }) = (&result, &r.sink) {
            let event = match tool_turns::interpret(written, *earlier, typed) {
                tool_turns::Turn::Call(call) => StreamEvent::ToolCall(call),
                tool_turns::Turn::Answer(text) => StreamEvent::Text(text),
            };
            events.push(Ok(event));
        }
        events.push(result.map(StreamEvent::Done));
        ended.push((r.job, events));
    }
}

/// Puts each loaded model's KV figures where `status` reads them.
fn publish(slots: &HashMap<PathBuf, Slot>, figures: &Loaded) {
    if let Ok(mut f) = figures.lock() {
        *f = slots
            .values()
            .map(|s| (s.model.name.clone(), s.figures()))
            .collect::<BTreeMap<_, _>>();
    }
}
