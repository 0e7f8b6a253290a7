//! Graceful shutdown: one [`CancellationToken`] for the whole process, cancelled by the first
//! SIGINT or SIGTERM. Every task the service starts observes it (a child token or a clone)
//! and returns when it is cancelled; a second signal exits at once.

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The process's shutdown token. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A token nothing cancels yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token to hand to tasks (cancelled when shutdown begins).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Cancels the token on the first SIGINT or SIGTERM; on a second one the process exits
    /// at once with status 128 + the signal's number (130 or 143).
    ///
    /// Installs the handlers before returning (so a signal that arrives right after is not
    /// missed); must run inside a tokio runtime.
    pub fn cancel_on_signals(&self) -> Result<()> {
        let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        let token = self.token.clone();
        tokio::spawn(async move {
            let (_, first) = next_signal(&mut interrupt, &mut terminate).await;
            tracing::info!("{first} received: shutting down");
            token.cancel();
            let (kind, second) = next_signal(&mut interrupt, &mut terminate).await;
            tracing::warn!("{second} received again: exiting now");
            eprintln!("{second} received again: exiting now");
            std::process::exit(128 + kind.as_raw_value());
        });
        Ok(())
    }
}

/// The next SIGINT or SIGTERM, and its name. Never returns once both streams have closed
/// (the runtime is going away).
async fn next_signal(interrupt: &mut Signal, terminate: &mut Signal) -> (SignalKind, &'static str) {
    tokio::select! {
        Some(()) = interrupt.recv() => (SignalKind::interrupt(), "SIGINT"),
        Some(()) = terminate.recv() => (SignalKind::terminate(), "SIGTERM"),
        else => std::future::pending().await,
    }
}
