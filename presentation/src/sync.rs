//! The one place the crate takes its synchronisation primitives from.
//!
//! Normal builds use `parking_lot` (no poisoning, small and fast uncontended locks).
//! (loom is a dev-dependency, so the switch applies to `--cfg loom` test builds.)
//! Under `--cfg loom` the same names resolve to thin wrappers around `loom`'s
//! primitives, so the model checker sees every lock the crate takes.

#[cfg(not(all(loom, test)))]
pub(crate) use parking_lot::{Mutex, RwLock};

#[cfg(all(loom, test))]
pub(crate) use self::loom_impl::{Mutex, RwLock};

#[cfg(all(loom, test))]
mod loom_impl {
    use std::fmt;

    use loom::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

    /// `loom::sync::Mutex` with parking_lot's panic-free `lock()` signature.
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            // A poisoned lock means another model thread panicked; the model has
            // already failed, so surfacing that panic here is the right outcome.
            self.0
                .lock()
                .expect("loom mutex poisoned by a panicking thread")
        }
    }

    impl<T> fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Mutex { .. }")
        }
    }

    /// `loom::sync::RwLock` with parking_lot's panic-free signatures.
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            // See `Mutex::lock` for why poisoning may panic under loom.
            self.0
                .read()
                .expect("loom rwlock poisoned by a panicking thread")
        }

        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            // See `Mutex::lock` for why poisoning may panic under loom.
            self.0
                .write()
                .expect("loom rwlock poisoned by a panicking thread")
        }
    }

    impl<T> fmt::Debug for RwLock<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("RwLock { .. }")
        }
    }
}
