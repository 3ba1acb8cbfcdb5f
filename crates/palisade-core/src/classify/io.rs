//! `std::io::ErrorKind` → [`Category`].

use std::io::ErrorKind;

use super::Classification;
use crate::Category;

/// The category and metric label of an I/O error kind.
///
/// | kinds | category |
/// |---|---|
/// | `ConnectionRefused`, `NotConnected`, `AddrNotAvailable` | `Retriable`: nothing was sent |
/// | `ConnectionReset`, `ConnectionAborted`, `BrokenPipe`, `TimedOut`, `WouldBlock`, `Interrupted`, `UnexpectedEof`, `HostUnreachable`, `NetworkUnreachable`, `NetworkDown`, `ResourceBusy`, `OutOfMemory` | `Transient`: may have been sent; wait and retry |
/// | `InvalidData`, `Unsupported`, `StorageFull`, `ReadOnlyFilesystem`, `StaleNetworkFileHandle`, `FileTooLarge` | `Fatal` |
/// | `NotFound`, `PermissionDenied`, `AlreadyExists`, `InvalidInput`, `AddrInUse`, `IsADirectory`, `NotADirectory`, `DirectoryNotEmpty`, `InvalidFilename`, `ArgumentListTooLong` | `InvalidInput` |
/// | anything else (`Other`, future kinds) | `Unknown` |
///
/// ```
/// use std::io::ErrorKind;
/// use palisade_core::{Category, classify::io_category};
/// assert_eq!(io_category(ErrorKind::ConnectionRefused), (Category::Retriable, "connection_refused"));
/// assert_eq!(io_category(ErrorKind::TimedOut).0, Category::Transient);
/// ```
pub fn io_category(kind: ErrorKind) -> (Category, &'static str) {
    use Category::*;
    match kind {
        ErrorKind::ConnectionRefused => (Retriable, "connection_refused"),
        ErrorKind::NotConnected => (Retriable, "not_connected"),
        ErrorKind::AddrNotAvailable => (Retriable, "addr_not_available"),

        ErrorKind::ConnectionReset => (Transient, "connection_reset"),
        ErrorKind::ConnectionAborted => (Transient, "connection_aborted"),
        ErrorKind::BrokenPipe => (Transient, "broken_pipe"),
        ErrorKind::TimedOut => (Transient, "timed_out"),
        ErrorKind::WouldBlock => (Transient, "would_block"),
        ErrorKind::Interrupted => (Transient, "interrupted"),
        ErrorKind::UnexpectedEof => (Transient, "unexpected_eof"),
        ErrorKind::HostUnreachable => (Transient, "host_unreachable"),
        ErrorKind::NetworkUnreachable => (Transient, "network_unreachable"),
        ErrorKind::NetworkDown => (Transient, "network_down"),
        ErrorKind::ResourceBusy => (Transient, "resource_busy"),
        ErrorKind::OutOfMemory => (Transient, "out_of_memory"),

        ErrorKind::InvalidData => (Fatal, "invalid_data"),
        ErrorKind::Unsupported => (Fatal, "unsupported"),
        ErrorKind::StorageFull => (Fatal, "storage_full"),
        ErrorKind::ReadOnlyFilesystem => (Fatal, "read_only_filesystem"),
        ErrorKind::StaleNetworkFileHandle => (Fatal, "stale_network_file_handle"),
        ErrorKind::FileTooLarge => (Fatal, "file_too_large"),

        ErrorKind::NotFound => (InvalidInput, "not_found"),
        ErrorKind::PermissionDenied => (InvalidInput, "permission_denied"),
        ErrorKind::AlreadyExists => (InvalidInput, "already_exists"),
        ErrorKind::InvalidInput => (InvalidInput, "invalid_input"),
        ErrorKind::AddrInUse => (InvalidInput, "addr_in_use"),
        ErrorKind::IsADirectory => (InvalidInput, "is_a_directory"),
        ErrorKind::NotADirectory => (InvalidInput, "not_a_directory"),
        ErrorKind::DirectoryNotEmpty => (InvalidInput, "directory_not_empty"),
        ErrorKind::InvalidFilename => (InvalidInput, "invalid_filename"),
        ErrorKind::ArgumentListTooLong => (InvalidInput, "argument_list_too_long"),

        _ => (Unknown, "io_other"),
    }
}

pub(super) fn classify_io(err: &std::io::Error) -> Classification {
    let (category, label) = io_category(err.kind());
    Classification::new(category, label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_used_is_mapped() {
        use Category::*;
        let table = [
            (ErrorKind::ConnectionRefused, Retriable),
            (ErrorKind::NotConnected, Retriable),
            (ErrorKind::AddrNotAvailable, Retriable),
            (ErrorKind::ConnectionReset, Transient),
            (ErrorKind::ConnectionAborted, Transient),
            (ErrorKind::BrokenPipe, Transient),
            (ErrorKind::TimedOut, Transient),
            (ErrorKind::WouldBlock, Transient),
            (ErrorKind::Interrupted, Transient),
            (ErrorKind::UnexpectedEof, Transient),
            (ErrorKind::HostUnreachable, Transient),
            (ErrorKind::NetworkUnreachable, Transient),
            (ErrorKind::NetworkDown, Transient),
            (ErrorKind::ResourceBusy, Transient),
            (ErrorKind::OutOfMemory, Transient),
            (ErrorKind::InvalidData, Fatal),
            (ErrorKind::Unsupported, Fatal),
            (ErrorKind::StorageFull, Fatal),
            (ErrorKind::ReadOnlyFilesystem, Fatal),
            (ErrorKind::StaleNetworkFileHandle, Fatal),
            (ErrorKind::FileTooLarge, Fatal),
            (ErrorKind::NotFound, InvalidInput),
            (ErrorKind::PermissionDenied, InvalidInput),
            (ErrorKind::AlreadyExists, InvalidInput),
            (ErrorKind::InvalidInput, InvalidInput),
            (ErrorKind::AddrInUse, InvalidInput),
            (ErrorKind::IsADirectory, InvalidInput),
            (ErrorKind::NotADirectory, InvalidInput),
            (ErrorKind::DirectoryNotEmpty, InvalidInput),
            (ErrorKind::InvalidFilename, InvalidInput),
            (ErrorKind::ArgumentListTooLong, InvalidInput),
            (ErrorKind::Other, Unknown),
            (ErrorKind::WriteZero, Unknown),
        ];
        let mut labels = std::collections::HashSet::new();
        for (kind, want) in table {
            let (got, label) = io_category(kind);
            assert_eq!(got, want, "{kind:?}");
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
            if want != Unknown {
                assert!(labels.insert(label), "label {label} used twice");
            }
            let c = classify_io(&std::io::Error::from(kind));
            assert_eq!((c.category, c.label), (want, label));
        }
    }
}
