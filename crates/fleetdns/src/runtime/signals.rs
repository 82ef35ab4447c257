//! The process signals the long-running commands obey: SIGINT/SIGTERM stop, SIGHUP reloads;
//! and SIGPIPE for the commands that print. The binary's only `unsafe` code is here.

use anyhow::Context;

/// Watches SIGHUP (`serve` reloads its config on it).
#[cfg(unix)]
pub(crate) fn hangup_signal() -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot watch SIGHUP")
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Commands that print to stdout end quietly when the reader goes away (`| head`), as other
/// command-line tools do, instead of panicking in `println!`. `serve` keeps Rust's default
/// (SIGPIPE ignored), so a client closing a socket never kills the server.
#[allow(unsafe_code)]
pub(crate) fn exit_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: called before any thread is started; resets one signal to its default action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
