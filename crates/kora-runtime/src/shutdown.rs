//! SIGINT/SIGTERM to a [`CancellationToken`]: the first signal asks every task to drain; the
//! second asks the process to stop now (the returned receiver fires).

use tokio_util::sync::CancellationToken;

/// Listens for termination signals. Cancels `token` on the first; the returned future resolves
/// on the second, for the caller to exit without waiting for the drain.
pub fn install(token: CancellationToken) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            if wait_signal().await.is_err() {
                return;
            }
            n += 1;
            if n == 1 {
                tracing::info!(
                    "shutdown requested; draining (send the signal again to stop at once)"
                );
                token.cancel();
            } else {
                let _ = tx.send(());
                return;
            }
        }
    });
    rx
}

async fn wait_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
