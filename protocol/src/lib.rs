//! The Jupyter messaging protocol as skillkernel speaks it.
//!
//! This crate turns the multipart frames of the Jupyter wire protocol into
//! typed [`Message`]s and back: the `<IDS|MSG>` delimiter, HMAC-SHA256
//! signing with constant-time verification ([`Signer`]), headers whose
//! `parent_header` is an exact byte copy of the request header, ISO-8601
//! dates with microseconds, the kernel-side message contents of protocol
//! versions 5.3–5.5 and skillkernel's extension messages ([`content`]),
//! the request types and their replies' names ([`RequestType`]),
//! connection files ([`ConnectionInfo`]) and kernelspec JSON
//! ([`KernelSpec`]).
//!
//! # What this crate must never do
//!
//! * Open a socket or spawn a task: it is pure data in, data out, so it can
//!   be tested byte by byte and reused by any transport.
//! * Panic on input. Every parser returns a typed [`ProtocolError`]; property
//!   tests feed arbitrary bytes to prove it.
//! * Rewrite a parent header. Replies carry the request's header frame
//!   verbatim, unknown keys and key order included.

pub mod connection;
pub mod content;
mod error;
mod header;
pub mod kernelspec;
mod message;
mod msg_type;
pub mod paths;
mod signing;
mod wire;

pub use connection::{ChannelPort, ConnectionError, ConnectionInfo};
pub use error::ProtocolError;
pub use header::{now_iso8601, Header, PROTOCOL_VERSION};
pub use kernelspec::KernelSpec;
pub use message::{Message, RawJson};
pub use msg_type::{comm, reply_type, stdin, RequestType};
pub use signing::{SignatureError, Signer, SIGNATURE_SCHEME};
pub use wire::{split_frames, WireFrames, WireLimits, DELIMITER};
