//! Bounded shutdown: whatever hangs, the process exits.
//!
//! A [`Watchdog`] is armed when shutdown begins. Each step names itself ([`Watchdog::stage`]);
//! if the process is still alive at the deadline, the watchdog logs the step it was in and
//! exits with [`HUNG_EXIT_CODE`]. It is never disarmed: dropping the async runtime after a
//! clean shutdown can itself wait for blocking tasks, and that too must not hang.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exit code when shutdown did not finish within its deadline.
pub const HUNG_EXIT_CODE: i32 = 70;

pub struct Watchdog {
    stage: Arc<Mutex<&'static str>>,
}

impl Watchdog {
    /// Starts the watchdog thread; `on_hang` runs at `deadline` if the process is still alive
    /// (in production: log and exit).
    pub fn arm(deadline: Duration, on_hang: impl FnOnce(&'static str, Duration) + Send + 'static) -> Self {
        let stage = Arc::new(Mutex::new("starting to shut down"));
        let seen = stage.clone();
        let started = Instant::now();
        let spawned = std::thread::Builder::new().name("shutdown-watchdog".into()).spawn(move || {
            std::thread::sleep(deadline);
            let stage = *seen.lock().unwrap_or_else(|e| e.into_inner());
            on_hang(stage, started.elapsed());
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the shutdown watchdog");
        }
        Self { stage }
    }

    /// The production watchdog: logs the hung step and exits non-zero.
    pub fn exit_on_hang(deadline: Duration) -> Self {
        Self::arm(deadline, |stage, elapsed| {
            tracing::error!(
                stage,
                secs = elapsed.as_secs(),
                "shutdown did not finish in time (still {stage}); exiting anyway"
            );
            eprintln!("error: shutdown hung while {stage}; exiting after {} s", elapsed.as_secs());
            std::process::exit(HUNG_EXIT_CODE);
        })
    }

    pub fn stage(&self, stage: &'static str) {
        *self.stage.lock().unwrap_or_else(|e| e.into_inner()) = stage;
        tracing::info!("shutting down: {stage}");
    }
}

/// Resolves at the first SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                tracing::warn!("could not install signal handlers; waiting for Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_reports_the_stage_it_was_in_at_the_deadline() {
        let (tx, rx) = std::sync::mpsc::channel();
        let dog = Watchdog::arm(Duration::from_millis(50), move |stage, elapsed| {
            let _ = tx.send((stage, elapsed));
        });
        dog.stage("the final flush");
        let (stage, elapsed) = rx.recv_timeout(Duration::from_secs(5)).expect("the watchdog fired");
        assert_eq!(stage, "the final flush");
        assert!(elapsed >= Duration::from_millis(50));
    }
}
