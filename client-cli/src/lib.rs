//! The client side of the Jupyter protocol for skillkernel: what `skillctl`
//! uses, and what the integration tests drive the daemon with.
//!
//! [`KernelClient`] connects to a kernel's five channels, signs and sends
//! requests, and matches replies and IOPub output to the request that
//! caused them. [`KernelClient::execute`] runs one cell and hands each
//! output message to an [`OutputHandler`] as it arrives. [`mcp::bridge`]
//! is `skillctl mcp`: an agent's stdio MCP server carried to the daemon.
//!
//! # What this crate must never do
//!
//! Hold kernel logic. It speaks the protocol as any Jupyter front end does
//! and trusts nothing the kernel does not put on the wire.

mod client;
pub mod mcp;
pub mod render;

pub use client::{
    ClientError, ExecuteOptions, ExecuteOutcome, Interrupter, KernelClient, OutputHandler, Quiet,
    Target,
};
