//! The task that serves a [`Server`](super::Server)'s accepted connections with tonic's
//! router until shutdown, and reports how it ended (an error or a panic) so that the
//! owner of the server can report a fault.

use tokio::sync::{oneshot, watch};
use tonic::transport::server::{Connected, Router};

/// The serve task: serves `incoming` until `shutdown` fires (or its sender is dropped).
pub(super) async fn run<I, IO>(
    router: Router,
    incoming: I,
    shutdown: oneshot::Receiver<()>,
    services: Vec<&'static str>,
) -> Result<(), tonic::transport::Error>
where
    I: futures::Stream<Item = Result<IO, std::io::Error>>,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Connected + Unpin + Send + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
{
    tracing::debug!(?services, "gRPC server listening");
    let signal = async {
        // An error means the Server handle is gone; stop then too.
        let _ = shutdown.await;
    };
    let result = router.serve_with_incoming_shutdown(incoming, signal).await;
    match &result {
        Ok(()) => tracing::debug!("gRPC server stopped"),
        Err(error) => tracing::warn!(%error, "gRPC server failed"),
    }
    result
}

/// Runs the serve task, publishing on `failed` how it failed (an error or a panic), so
/// the owner of the server can report it as a fault; a panic is resumed after, so
/// [`Server::shutdown`] still sees it.
pub(super) async fn supervised<F>(
    serve: F,
    failed: watch::Sender<Option<String>>,
) -> Result<(), tonic::transport::Error>
where
    F: std::future::Future<Output = Result<(), tonic::transport::Error>>,
{
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(serve).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            failed.send_replace(Some(format!("the gRPC server failed: {error}")));
            Err(error)
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            failed.send_replace(Some(format!("the gRPC server panicked: {message}")));
            std::panic::resume_unwind(panic)
        }
    }
}

#[cfg(test)]
mod supervised_tests {
    use super::*;

    #[tokio::test]
    async fn a_serve_task_that_panics_is_published_as_failed() {
        let (tx, mut rx) = watch::channel(None);
        let task = tokio::spawn(supervised(
            async {
                let boom: Option<u8> = None;
                if boom.is_none() {
                    panic!("serve loop broke");
                }
                Ok(())
            },
            tx,
        ));
        assert!(task.await.unwrap_err().is_panic(), "the panic is resumed");
        let failed = rx.wait_for(Option::is_some).await.unwrap().clone();
        assert_eq!(
            failed.as_deref(),
            Some("the gRPC server panicked: serve loop broke")
        );
        let (tx, rx) = watch::channel(None);
        supervised(async { Ok(()) }, tx).await.unwrap();
        assert_eq!(*rx.borrow(), None, "a clean stop is no failure");
    }
}
