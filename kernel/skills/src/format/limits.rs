//! The bounds every format enforces at load, in one place so that the
//! docs, the JSON Schema and the checks agree.

/// A manifest (or `SKILL.md`) larger than this is refused unread: skills
/// are small text files, and the registry reads hundreds of them at start.
pub const MAX_MANIFEST_BYTES: u64 = 256 * 1024;

/// A skill name: at most this many characters (Agent Skills rule).
pub const MAX_NAME_CHARS: usize = 64;

/// A description: at most this many characters (Agent Skills rule).
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// An Agent Skills `compatibility`: at most this many characters.
pub const MAX_COMPATIBILITY_CHARS: usize = 500;

/// An Agent Skills folder lists at most this many resource files.
pub const MAX_RESOURCES: usize = 256;

/// Resource folders are followed this deep below the skill folder.
pub const MAX_RESOURCE_DEPTH: usize = 8;

/// The version of a skill that declares none (a `SKILL.md` without a
/// semver `metadata.version`, a Skillrunner file without `version`, a
/// native manifest without `version`): below every released version.
pub const UNVERSIONED: semver::Version = semver::Version::new(0, 0, 0);

/// `max_parallel` when a workflow gives none.
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// Sanity bounds of `resilience`.
pub const MAX_RETRIES: u64 = 10;
pub const MAX_TIMEOUT_SECS: u64 = 24 * 60 * 60;

/// Generation settings: `temperature` in 0.0 ..= 2.0, `max_tokens` ≥ 1.
pub const MAX_TEMPERATURE: f64 = 2.0;

/// A phase id: letters, digits, `_` and `-`, at most this long.
pub const MAX_PHASE_ID_CHARS: usize = 64;
