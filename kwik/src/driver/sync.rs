//! The driver's one switchable synchronisation primitive: the mutex of the
//! waker registry ([`wakers`](crate::driver::wakers)) is `parking_lot`'s
//! normally and `loom`'s under `--cfg loom`, so the hand-off between a blocked
//! application call and the task that wakes it can be model-checked. (Only
//! this crate gets the cfg: tokio and quinn do not build under a global
//! `--cfg loom`; see `.ci/run`.)

#[cfg(not(loom))]
pub(crate) use parking_lot::Mutex;

#[cfg(loom)]
pub(crate) use self::loom_impl::Mutex;

#[cfg(loom)]
mod loom_impl {
    use std::fmt;

    use loom::sync::MutexGuard;

    /// `loom::sync::Mutex` with parking_lot's panic-free `lock()` signature.
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            // Poisoned only if another model thread panicked: the model has
            // failed already, so recovering the data is as good as anything.
            match self.0.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            }
        }
    }

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Self::new(T::default())
        }
    }

    impl<T> fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Mutex { .. }")
        }
    }
}
