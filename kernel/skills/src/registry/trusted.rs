//! Workspace trust as listings show it: where each listed skill stands.
//!
//! The check itself is in `activate.rs` (`begin_execution`); this is the
//! read side, **blocking**: a skill not loaded yet is parsed from its file
//! (without touching its lifecycle) to learn what it asks for — once while
//! its folder is watched — and what asks for trust has its files digested
//! (also cached while watched).

use super::{read, SkillEntry, SkillRegistry};
use crate::format;
use crate::model::Origin;
use crate::trust::{TrustMark, TrustStatus};
use skillkernel_stdx::lock;

impl SkillRegistry {
    /// Where the skill `entry` lists stands; `None` when its file does not
    /// load (the listing shows that failure instead).
    pub fn trust_of(&self, entry: &SkillEntry) -> Option<TrustStatus> {
        let source = &entry.header.source;
        if matches!(source.origin, Origin::Builtin | Origin::Cell) {
            return Some(TrustStatus {
                mark: TrustMark::Own,
                asks: Vec::new(),
                digest: None,
                record: None,
                problem: None,
            });
        }
        let path = source.path.as_deref()?;
        let loaded = {
            let cat = read(&self.catalog);
            cat.slot_for(&entry.header.meta.name, &entry.header.meta.version)
                .and_then(|slot| {
                    let st = lock(&slot.state);
                    let first = st.candidates.first()?;
                    (first.path() == Some(path)).then(|| st.life.skill.clone())?
                })
        };
        if let Some(skill) = loaded {
            return Some(self.trust.status(&skill));
        }
        let asks = self.trust.asks_for_file(path, || {
            self.io.count_full_parse();
            format::load_file(path, source.origin).ok()
        })?;
        Some(self.trust.status_of(source.origin, Some(path), asks))
    }
}
