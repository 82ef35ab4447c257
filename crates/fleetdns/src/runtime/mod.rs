//! What the commands share: the async runtime, the sources ([`sources`]), the signals
//! ([`signals`]), `serve`'s reload ([`reload`]), its compile loop ([`compile`]) and giving freed
//! memory back to the kernel ([`memory`]).

pub mod compile;
pub mod memory;
pub mod reload;
pub mod signals;
pub mod sources;

use anyhow::Context;

/// The multi-threaded tokio runtime every async command runs on.
pub fn build() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
