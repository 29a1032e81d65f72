//! The process: glibc malloc tuning for `hindsight archive` (by
//! re-executing itself), and shutdown signals (SIGTERM, Ctrl-C), held from
//! the first instruction of `main` until their handlers exist.

use tokio_util::sync::CancellationToken;

/// The glibc malloc settings `hindsight archive` runs with, unless the
/// environment sets `GLIBC_TUNABLES`: at most two arenas, allocations from
/// 256 KiB up mapped on their own (returned to the OS when freed), and the
/// heap trimmed when 4 MiB at its top are free. An ingester frees a whole
/// batch every few seconds; with the defaults that memory stayed resident
/// (BENCHMARKS.md, P8: 310 MiB peak RSS on the P1 data, 177 MiB with these,
/// for about 15% more CPU per event). Queries keep the defaults.
const INGEST_MALLOC_TUNABLES: &str =
    "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=262144:glibc.malloc.trim_threshold=4194304";

/// glibc reads its tunables from the environment once, at start-up, so the
/// process sets them and executes itself again (same pid, same arguments).
/// `execve` keeps the signal mask and pending signals, so a SIGTERM that
/// arrives meanwhile waits for the handlers (see [`hold_shutdown_signals`]);
/// `std::process::Command` would reset the mask and let it kill the process.
/// When the re-execution fails, Hindsight runs with the default settings.
pub fn tune_allocator_for_ingest() {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else {
        return;
    };
    let text = |bytes: &[u8]| CString::new(bytes).ok();
    let arguments: Option<Vec<CString>> = std::env::args_os()
        .map(|argument| text(argument.as_bytes()))
        .collect();
    let environment: Option<Vec<CString>> = std::env::vars_os()
        .map(|(name, value)| text(&[name.as_bytes(), &b"="[..], value.as_bytes()].concat()))
        .chain(std::iter::once(text(
            format!("GLIBC_TUNABLES={INGEST_MALLOC_TUNABLES}").as_bytes(),
        )))
        .collect();
    let (Some(path), Some(arguments), Some(environment)) = (
        text(executable.as_os_str().as_bytes()),
        arguments,
        environment,
    ) else {
        return;
    };
    // `execve` returns only when it failed.
    let Err(error) = nix::unistd::execve(&path, &arguments, &environment);
    eprintln!("warning: running with the default malloc settings: {error}");
}

/// SIGTERM and SIGINT, blocked from the first instruction of `main` until
/// [`shutdown_token`] has installed their handlers: one that arrives during
/// start-up (or the allocator's re-execution) stays pending and then cancels
/// cleanly, instead of killing the process with the default action.
fn shutdown_signals() -> nix::sys::signal::SigSet {
    let mut signals = nix::sys::signal::SigSet::empty();
    signals.add(nix::sys::signal::Signal::SIGTERM);
    signals.add(nix::sys::signal::Signal::SIGINT);
    signals
}

/// Blocks the shutdown signals in the main thread before any other thread
/// exists, so every thread inherits the mask; only the main thread unblocks
/// them, once the handlers exist. Child processes start with a clean mask
/// (`std::process::Command` resets it).
pub fn hold_shutdown_signals() {
    if let Err(error) = shutdown_signals().thread_block() {
        eprintln!("warning: cannot hold SIGTERM during start-up: {error}");
    }
}

/// A token cancelled on Ctrl-C or SIGTERM. The handlers are installed before
/// it returns, and only then are the signals held since `main` let through:
/// one that arrived during start-up cancels the token at once.
pub fn shutdown_token() -> CancellationToken {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let cancel = token.clone();
    let handlers = signal(SignalKind::interrupt())
        .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)));
    match handlers {
        Ok((mut interrupt, mut terminate)) => {
            tokio::spawn(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                tracing::info!("shutting down");
                cancel.cancel();
            });
        }
        Err(error) => tracing::error!(%error, "cannot listen for SIGTERM and Ctrl-C"),
    }
    if let Err(error) = shutdown_signals().thread_unblock() {
        tracing::error!(%error, "cannot let SIGTERM and Ctrl-C through");
    }
    token
}
