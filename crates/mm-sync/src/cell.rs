//! `UnsafeCell` with loom's `with`/`with_mut` access API in every runtime.

#[cfg(mm_loom)]
pub use loom::cell::UnsafeCell;

/// An `UnsafeCell` whose accesses go through closures, so loom can check them.
#[cfg(not(mm_loom))]
#[derive(Debug, Default)]
pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(mm_loom))]
impl<T> UnsafeCell<T> {
    /// Creates a cell.
    pub const fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }
    /// Gives `f` a shared pointer to the value.
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    /// Gives `f` a unique pointer to the value.
    #[inline]
    pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
