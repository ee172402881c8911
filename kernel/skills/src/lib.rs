//! The skill executor: reusable, versioned LLM procedures.
//!
//! A skill is loaded from one of three formats into the one [`model`]
//! ([`Skill`]), kept in a registry that discovers, indexes and versions
//! skills, and run by an executor that validates parameters, renders
//! [`template`]s and calls models through the providers' `Registry`.
//!
//! ```text
//!  skill.yaml / skill.json ─┐
//!  SKILL.md (Agent Skills) ─┼─ format ─► Skill ─► registry ─► executor ─► providers
//!  Skillrunner workflow ────┘   (load-time checks)  (index,      (params, DAG,
//!  %%skill cell ────────────┘                        versions,    retries, breaker,
//!                                                    lifecycle)   metrics)
//! ```
//!
//! # Invariants
//!
//! * Everything past parsing reads [`Skill`], never a file format.
//! * A `Skill` that exists is valid: its templates only name variables that
//!   will exist when they render, its workflow is acyclic.
//! * A broken skill never stops the others: it is reported with its file,
//!   field, line and remedy, and every other skill keeps loading and running.
//! * A skill from outside the binary that asks for more than the default
//!   (a program, network, paths, environment) runs only once trusted at its
//!   current files' digest ([`trust`]).
//! * Errors users see are [`SkillError`]s with a stable [`ErrorCode`] and a
//!   hint.

pub mod arguments;
pub mod config;
pub mod error;
pub mod exec;
pub mod external;
pub mod format;
pub mod metrics;
pub mod model;
pub mod output;
pub mod registry;
pub mod service;
pub mod template;
pub mod testing;
pub mod tools;
pub mod trust;
pub mod verdict_error;

pub use error::{ErrorCode, LoadError, SkillError};
pub use model::{Skill, SkillBody, SkillHeader, SkillKind, SkillMeta};
pub use output::OutputSchema;
pub use template::Template;
