//! A response cache for deterministic requests.
//!
//! With temperature 0 a model gives the same answer to the same messages,
//! so the answer can be kept and served again without running the model.
//! Keys are blake3 hashes of the backend, the model and the request;
//! entries carry the time they were written and expire after a TTL. The
//! store is sled, in the daemon's state directory.
//!
//! sled lets one process open a store at a time. A second kernel on the
//! same state directory runs without a cache rather than failing: the
//! caller gets the open error and decides.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Completion, CompletionRequest, ProviderError};

/// The cache. Clones share one store.
#[derive(Clone)]
pub struct ResponseCache {
    tree: sled::Tree,
    ttl: Duration,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    stored_at: u64,
    completion: Completion,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn store_err(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Other(format!("response cache: {e}"))
}

impl ResponseCache {
    /// Opens (or creates) the cache in `dir`.
    pub fn open(dir: &Path, ttl: Duration) -> Result<Self, ProviderError> {
        // Through sled_open: a handle this process just dropped may still
        // hold the lock for a moment (a reload reopens the cache).
        let config = sled::Config::new().path(dir).cache_capacity(8 << 20);
        let db = skillkernel_stdx::sled_open::open(&config)
            .map_err(|e| store_err(format!("cannot open {}: {e}", dir.display())))?;
        let tree = db.open_tree("responses").map_err(store_err)?;
        Ok(ResponseCache { tree, ttl })
    }

    /// The same store with another time to live.
    pub fn with_ttl(&self, ttl: Duration) -> Self {
        ResponseCache {
            tree: self.tree.clone(),
            ttl,
        }
    }

    /// Whether a request may be answered from the cache at all.
    pub fn is_deterministic(request: &CompletionRequest) -> bool {
        request.options.temperature <= 0.0
    }

    /// The key for `request` served by `backend`.
    pub fn key(backend: &str, request: &CompletionRequest) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"skillkernel-response-v1\0");
        hasher.update(backend.as_bytes());
        hasher.update(b"\0");
        // The request serialises deterministically: fields in declaration order.
        let body = serde_json::to_vec(request).unwrap_or_default();
        hasher.update(&body);
        *hasher.finalize().as_bytes()
    }

    /// The stored answer for `key`, if one is there and fresh.
    pub fn get(&self, key: &[u8; 32]) -> Option<Completion> {
        let bytes = self.tree.get(key).ok()??;
        let entry: Entry = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(_) => {
                let _ = self.tree.remove(key);
                return None;
            }
        };
        if now_secs().saturating_sub(entry.stored_at) >= self.ttl.as_secs() {
            let _ = self.tree.remove(key);
            return None;
        }
        Some(entry.completion)
    }

    /// Keeps an answer.
    pub fn put(&self, key: &[u8; 32], completion: &Completion) -> Result<(), ProviderError> {
        let entry = Entry {
            stored_at: now_secs(),
            completion: completion.clone(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(store_err)?;
        self.tree.insert(key, bytes).map_err(store_err)?;
        Ok(())
    }

    /// Drops expired entries; returns how many went.
    pub fn purge_expired(&self) -> usize {
        let now = now_secs();
        let mut removed = 0;
        for item in self.tree.iter().flatten() {
            let (key, bytes) = item;
            let stale = serde_json::from_slice::<Entry>(&bytes)
                .map(|e| now.saturating_sub(e.stored_at) >= self.ttl.as_secs())
                .unwrap_or(true);
            if stale && self.tree.remove(key).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Number of entries, fresh or not.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Writes everything to disk now.
    pub fn flush(&self) -> Result<(), ProviderError> {
        self.tree.flush().map(|_| ()).map_err(store_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatMessage, GenerationOptions, GenerationStats};

    fn request(text: &str, temperature: f32) -> CompletionRequest {
        CompletionRequest {
            model: "m".into(),
            messages: vec![ChatMessage::new("user", text)],
            options: GenerationOptions {
                temperature,
                ..GenerationOptions::default()
            },
            format: None,
            tools: Vec::new(),
            tool_choice: Default::default(),
        }
    }

    fn answer(text: &str) -> Completion {
        Completion {
            text: text.into(),
            tool_calls: Vec::new(),
            stats: GenerationStats {
                prompt_tokens: 3,
                completion_tokens: 2,
                prompt_ms: 1.0,
                first_token_ms: Some(1.0),
                total_ms: 2.0,
                finish_reason: "stop".into(),
                cached: false,
                ..Default::default()
            },
        }
    }

    #[test]
    fn answers_are_kept_per_backend_and_request_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let key = ResponseCache::key("candle", &request("hi", 0.0));
        {
            let cache = ResponseCache::open(dir.path(), Duration::from_secs(60)).unwrap();
            assert!(cache.get(&key).is_none());
            cache.put(&key, &answer("hello")).unwrap();
            cache.flush().unwrap();
        }
        let cache = ResponseCache::open(dir.path(), Duration::from_secs(60)).unwrap();
        assert_eq!(cache.get(&key).unwrap().text, "hello");
        assert_ne!(key, ResponseCache::key("ollama", &request("hi", 0.0)));
        assert_ne!(key, ResponseCache::key("candle", &request("hi!", 0.0)));
        assert!(!ResponseCache::is_deterministic(&request("hi", 0.7)));
    }

    #[test]
    fn expired_answers_are_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::open(dir.path(), Duration::from_secs(0)).unwrap();
        let key = ResponseCache::key("candle", &request("hi", 0.0));
        cache.put(&key, &answer("hello")).unwrap();
        assert!(cache.get(&key).is_none());
        cache.put(&key, &answer("hello")).unwrap();
        assert_eq!(cache.purge_expired(), 1);
        assert!(cache.is_empty());
    }
}
