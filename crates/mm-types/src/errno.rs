//! Errno values returned by simulated syscalls.

/// A Linux errno, as a simulated syscall returns it (the value is the positive errno).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, thiserror::Error)]
#[repr(i32)]
pub enum Errno {
    /// Operation not permitted.
    #[error("EPERM: operation not permitted")]
    Eperm = 1,
    /// No such process.
    #[error("ESRCH: no such process")]
    Esrch = 3,
    /// I/O error.
    #[error("EIO: input/output error")]
    Eio = 5,
    /// Try again.
    #[error("EAGAIN: resource temporarily unavailable")]
    Eagain = 11,
    /// Out of memory.
    #[error("ENOMEM: cannot allocate memory")]
    Enomem = 12,
    /// Permission denied.
    #[error("EACCES: permission denied")]
    Eacces = 13,
    /// Bad address.
    #[error("EFAULT: bad address")]
    Efault = 14,
    /// Device or resource busy.
    #[error("EBUSY: device or resource busy")]
    Ebusy = 16,
    /// File exists.
    #[error("EEXIST: file exists")]
    Eexist = 17,
    /// No such device.
    #[error("ENODEV: no such device")]
    Enodev = 19,
    /// Invalid argument.
    #[error("EINVAL: invalid argument")]
    Einval = 22,
    /// File too large.
    #[error("EFBIG: file too large")]
    Efbig = 27,
    /// No space left on device.
    #[error("ENOSPC: no space left on device")]
    Enospc = 28,
    /// Value too large for the type.
    #[error("EOVERFLOW: value too large for defined data type")]
    Eoverflow = 75,
}

impl Errno {
    /// Returns the positive errno number.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

#[cfg(test)]
mod tests {
    use super::Errno;

    #[test]
    fn codes_match_asm_generic_errno() {
        assert_eq!(Errno::Enomem.code(), 12);
        assert_eq!(Errno::Einval.code(), 22);
        assert_eq!(Errno::Eexist.code(), 17);
        assert_eq!(Errno::Efault.code(), 14);
    }
}
