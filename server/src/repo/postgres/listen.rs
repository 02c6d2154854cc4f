//! `LISTEN` on its own connection: every server learns at once that reports were applied,
//! by whichever server applied them, and wakes the requests waiting for a thumbnail.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel applied reports are announced on.
pub const CHANNEL: &str = "imageapi_thumbnails";

/// Starts the listener; the receiver changes on each announcement, and after a reconnect
/// (announcements may have been missed meanwhile, so waiters should look again).
pub fn spawn(config: tokio_postgres::Config) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match listen(&config, &tx).await {
                Ok(()) => return, // every receiver is gone
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "lost the database notification connection; reconnecting");
                        failing = true;
                    }
                }
            }
            tx.send_modify(|n| *n = n.wrapping_add(1));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

async fn listen(config: &tokio_postgres::Config, tx: &watch::Sender<u64>) -> Result<(), String> {
    let (client, mut connection) = config.connect(NoTls).await.map_err(|e| e.to_string())?;
    let (messages_tx, mut messages) = futures_channel::mpsc::unbounded();
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            if messages_tx.unbounded_send(message).is_err() {
                break;
            }
        }
    });
    let result = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(|e| e.to_string())?;
        // Anything applied before LISTEN took effect was missed: look again once.
        tx.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            match messages.next().await {
                Some(Ok(AsyncMessage::Notification(_))) => tx.send_modify(|n| *n = n.wrapping_add(1)),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the database closed the connection".to_owned()),
            }
            if tx.is_closed() {
                return Ok(());
            }
        }
    }
    .await;
    driver.abort();
    result
}
