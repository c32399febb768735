//! The time the server's workers and handlers read and sleep by: one [`Clock`], created once
//! by [`crate::App`] and passed down, so a test can drive timed behaviour (retry backoff, and
//! later SLA timers and retention) with a [`TestClock`] instead of waiting.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use balie_core::Millis;
use tokio::sync::watch;

/// Where time comes from. IO-free as an interface: the system clock and a test clock both
/// implement it.
pub trait Clock: Send + Sync + 'static {
    /// Now, in epoch milliseconds.
    fn now(&self) -> Millis;
    /// Completes once [`Clock::now`] has reached `t` (at once if it has).
    fn sleep_until(&self, t: Millis) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's clock; sleeping is tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        crate::outbox::now_ms()
    }

    fn sleep_until(&self, t: Millis) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = u64::try_from(t.saturating_sub(self.now())).unwrap_or(0);
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that stands still until a test moves it; [`TestClock::advance`] wakes every
/// sleeper whose time has come.
#[derive(Debug)]
pub struct TestClock {
    now: watch::Sender<Millis>,
}

impl TestClock {
    pub fn at(start: Millis) -> Self {
        Self {
            now: watch::channel(start).0,
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = Millis::try_from(by.as_millis()).unwrap_or(Millis::MAX);
        self.now.send_modify(|now| *now = now.saturating_add(by));
    }
}

impl Clock for TestClock {
    fn now(&self) -> Millis {
        *self.now.borrow()
    }

    fn sleep_until(&self, t: Millis) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut now = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, which this future borrows.
            let _ = now.wait_for(|now| *now >= t).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_test_clock_wakes_a_sleeper_only_when_advanced_past_its_time() {
        let clock = TestClock::at(1_000);
        let mut sleep = clock.sleep_until(3_000);
        let pending = |f: &mut Pin<Box<dyn Future<Output = ()> + Send + '_>>| {
            let waker = std::task::Waker::noop();
            f.as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
                .is_pending()
        };
        assert!(pending(&mut sleep));
        clock.advance(Duration::from_millis(1_999));
        assert!(pending(&mut sleep), "not yet: 2999 < 3000");
        clock.advance(Duration::from_millis(1));
        assert!(!pending(&mut sleep), "woken at 3000");
        assert_eq!(clock.now(), 3_000);
        assert!(
            !pending(&mut clock.sleep_until(2_000)),
            "a past time is now"
        );
    }
}
