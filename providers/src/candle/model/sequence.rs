//! One sequence's keys and values in every layer: the state a generation
//! carries from one forward pass to the next.
//!
//! Sequences of one model are independent of each other and of the
//! model's weights, so several generations share each forward pass
//! ([`super::Model::forward_batch`]), and a prompt prefix one sequence
//! computed can be copied to start another ([`Sequence::copy_prefix`]).

use super::kv::{KvCache, KvError, KvType};

/// The KV cache of one sequence: a [`KvCache`] per layer, all holding
/// the same positions.
pub struct Sequence {
    layers: Vec<KvCache>,
    len: usize,
}

impl Sequence {
    /// An empty sequence of `n_layer` layers of `width` values per
    /// position, bounded by `capacity` positions.
    pub(super) fn new(
        kind: KvType,
        n_layer: usize,
        width: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Sequence {
        Sequence {
            layers: (0..n_layer)
                .map(|_| KvCache::new(kind, width, head_dim, capacity))
                .collect(),
            len: 0,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the held positions take over all layers.
    pub fn bytes(&self) -> u64 {
        self.layers.iter().map(KvCache::bytes).sum()
    }

    /// How keys and values are stored (Q8_0 may have fallen back to f16).
    pub fn kind(&self) -> KvType {
        self.layers.first().map_or(KvType::default(), KvCache::kind)
    }

    /// Keeps the first `positions` positions, returning the memory of the
    /// rest.
    pub fn truncate(&mut self, positions: usize) {
        let positions = positions.min(self.len);
        for l in &mut self.layers {
            l.truncate(positions);
        }
        self.len = positions;
    }

    /// A new sequence holding a copy of this one's first `positions`
    /// positions.
    pub fn copy_prefix(&self, positions: usize) -> Result<Sequence, KvError> {
        let positions = positions.min(self.len);
        Ok(Sequence {
            layers: self
                .layers
                .iter()
                .map(|l| l.copy_prefix(positions))
                .collect::<Result<_, _>>()?,
            len: positions,
        })
    }

    /// Makes room in every layer for `more` positions, so a forward pass
    /// that appends them cannot fail half-way for want of memory.
    pub(super) fn reserve(&mut self, more: usize) -> Result<(), KvError> {
        self.layers.iter_mut().try_for_each(|l| l.reserve(more))
    }

    pub(super) fn layer(&self, l: usize) -> &KvCache {
        &self.layers[l]
    }

    pub(super) fn layer_mut(&mut self, l: usize) -> &mut KvCache {
        &mut self.layers[l]
    }

    /// Takes the `n` positions every layer appended as held.
    pub(super) fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Drops whatever layers appended past the held positions (a forward
    /// pass that failed half-way).
    pub(super) fn roll_back(&mut self) {
        let len = self.len;
        for l in &mut self.layers {
            l.truncate(len);
        }
    }
}
