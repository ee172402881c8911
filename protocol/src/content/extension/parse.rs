//! Reading an action-tagged request, with an error that says what is
//! wrong in the client's terms: an unknown action (and the known ones), a
//! field the action needs, or serde's account of anything else.
//!
//! The actions and the fields each one needs are written once, in the
//! request enum's serde attributes. To name them in an error, the enum is
//! asked: deserializing `{"action": A}` through a deserializer whose error
//! type records serde's `unknown_variant` (with the list of variants) and
//! `missing_field` (with the field) says whether `A` is an action and which
//! field it cannot do without.

use std::fmt;

use serde::de::value::MapDeserializer;
use serde::de::{self, DeserializeOwned};
use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// The field that tags every extension request.
const ACTION: &str = "action";

/// Why a message's content is not the request it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequestError {
    /// No `action`, an `action` that is not a string, or a field of the
    /// wrong type; the message is serde's (`missing field `action``).
    #[error("{0}")]
    Invalid(String),
    /// An `action` the request does not have.
    #[error("unknown action `{action}`")]
    UnknownAction {
        action: String,
        /// The actions it has.
        known: &'static [&'static str],
    },
    /// The action needs a field the content lacks (or sets to `null`).
    #[error("action `{action}` needs `{field}`")]
    MissingField { action: String, field: &'static str },
}

/// Reads `T`, an enum tagged by `action`, from `content`.
pub(super) fn by_action<T: DeserializeOwned>(content: &Value) -> Result<T, RequestError> {
    let action = match content.get(ACTION) {
        Some(action) => String::deserialize(action),
        None => Err(de::Error::missing_field(ACTION)),
    }
    .map_err(|e: serde_json::Error| RequestError::Invalid(e.to_string()))?;
    T::deserialize(content).map_err(|e| match probe::<T>(&action) {
        Err(Probe::UnknownVariant(known)) => RequestError::UnknownAction { action, known },
        Err(Probe::MissingField(field)) if content.get(field).is_none_or(Value::is_null) => {
            RequestError::MissingField { action, field }
        }
        _ => RequestError::Invalid(e.to_string()),
    })
}

/// The actions of `T`, an enum tagged by `action`.
pub(super) fn actions<T: DeserializeOwned>() -> &'static [&'static str] {
    match probe::<T>("\0") {
        Err(Probe::UnknownVariant(known)) => known,
        _ => &[],
    }
}

/// Deserializes `{"action": action}` as `T`, to learn what serde reports.
fn probe<T: DeserializeOwned>(action: &str) -> Result<T, Probe> {
    T::deserialize(MapDeserializer::new(std::iter::once((ACTION, action))))
}

/// What serde reported while probing.
#[derive(Debug)]
enum Probe {
    UnknownVariant(&'static [&'static str]),
    MissingField(&'static str),
    Other,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::UnknownVariant(known) => write!(f, "unknown variant; expected one of {known:?}"),
            Probe::MissingField(field) => write!(f, "missing field `{field}`"),
            Probe::Other => f.write_str("invalid"),
        }
    }
}

impl std::error::Error for Probe {}

impl de::Error for Probe {
    fn custom<M: fmt::Display>(_msg: M) -> Self {
        Probe::Other
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Probe::UnknownVariant(expected)
    }

    fn missing_field(field: &'static str) -> Self {
        Probe::MissingField(field)
    }
}
