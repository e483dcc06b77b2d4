//! Error classes shared by the engine, its services and clients, after containerd's
//! `errdefs`: a domain error says which class it is in ([`Classify`]), and this module holds
//! the ONE mapping between classes and ttrpc status codes, applied at the service edge
//! ([`status`]) and read back by clients ([`Kind::of_status`]). Domain errors never carry
//! ttrpc codes themselves.

use std::fmt;

/// The class of an error, containerd's errdefs set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The object does not exist.
    NotFound,
    /// An object of that name already exists.
    AlreadyExists,
    /// The request itself is wrong.
    InvalidArgument,
    /// The request is valid but the state forbids it now.
    FailedPrecondition,
    /// The service (or a resource it needs) is not available now; retrying may help.
    Unavailable,
    /// The caller may not do this.
    PermissionDenied,
    /// A limit was reached (space, count, size).
    ResourceExhausted,
    /// The operation is not supported.
    Unimplemented,
    /// Stored data is damaged.
    DataLoss,
    /// The operation was aborted (a conflict, a lost race).
    Aborted,
    /// A deadline passed.
    DeadlineExceeded,
    /// The caller gave up.
    Canceled,
    /// Anything else: a failure inside the server.
    Internal,
}

impl Kind {
    /// The ttrpc code of this class.
    pub fn code(self) -> ttrpc::Code {
        use ttrpc::Code;
        match self {
            Kind::NotFound => Code::NOT_FOUND,
            Kind::AlreadyExists => Code::ALREADY_EXISTS,
            Kind::InvalidArgument => Code::INVALID_ARGUMENT,
            Kind::FailedPrecondition => Code::FAILED_PRECONDITION,
            Kind::Unavailable => Code::UNAVAILABLE,
            Kind::PermissionDenied => Code::PERMISSION_DENIED,
            Kind::ResourceExhausted => Code::RESOURCE_EXHAUSTED,
            Kind::Unimplemented => Code::UNIMPLEMENTED,
            Kind::DataLoss => Code::DATA_LOSS,
            Kind::Aborted => Code::ABORTED,
            Kind::DeadlineExceeded => Code::DEADLINE_EXCEEDED,
            Kind::Canceled => Code::CANCELLED,
            Kind::Internal => Code::INTERNAL,
        }
    }

    /// The class of a ttrpc code (the inverse of [`Kind::code`]; codes with no class of their
    /// own are [`Kind::Internal`]).
    pub fn of_code(code: ttrpc::Code) -> Kind {
        use ttrpc::Code;
        match code {
            Code::NOT_FOUND => Kind::NotFound,
            Code::ALREADY_EXISTS => Kind::AlreadyExists,
            Code::INVALID_ARGUMENT | Code::OUT_OF_RANGE => Kind::InvalidArgument,
            Code::FAILED_PRECONDITION => Kind::FailedPrecondition,
            Code::UNAVAILABLE => Kind::Unavailable,
            Code::PERMISSION_DENIED | Code::UNAUTHENTICATED => Kind::PermissionDenied,
            Code::RESOURCE_EXHAUSTED => Kind::ResourceExhausted,
            Code::UNIMPLEMENTED => Kind::Unimplemented,
            Code::DATA_LOSS => Kind::DataLoss,
            Code::ABORTED => Kind::Aborted,
            Code::DEADLINE_EXCEEDED => Kind::DeadlineExceeded,
            Code::CANCELLED => Kind::Canceled,
            _ => Kind::Internal,
        }
    }

    /// The class of a ttrpc error a client received: the status code's, or
    /// [`Kind::Unavailable`] for transport failures.
    pub fn of_error(e: &ttrpc::Error) -> Kind {
        match e {
            ttrpc::Error::RpcStatus(s) => Kind::of_code(s.code()),
            _ => Kind::Unavailable,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.code())
    }
}

/// A domain error that knows its class.
pub trait Classify: std::error::Error {
    /// The class of this error.
    fn kind(&self) -> Kind;
}

/// `error: cause: cause`, as one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A ttrpc status of class `kind` with `message`.
pub fn to_ttrpc(kind: Kind, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(kind.code(), message.into()))
}

/// The ttrpc status of a classified error: its class's code, its whole cause chain as the
/// message. What every service returns.
pub fn status<E: Classify>(e: &E) -> ttrpc::Error {
    to_ttrpc(e.kind(), chain(e))
}

/// An INVALID_ARGUMENT status.
pub fn invalid(message: impl Into<String>) -> ttrpc::Error {
    to_ttrpc(Kind::InvalidArgument, message)
}

/// A ttrpc error as `CODE: message` (statuses) or as it displays (transport errors): what
/// clients print.
pub fn describe(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_round_trips_through_its_code() {
        for k in [
            Kind::NotFound,
            Kind::AlreadyExists,
            Kind::InvalidArgument,
            Kind::FailedPrecondition,
            Kind::Unavailable,
            Kind::PermissionDenied,
            Kind::ResourceExhausted,
            Kind::Unimplemented,
            Kind::DataLoss,
            Kind::Aborted,
            Kind::DeadlineExceeded,
            Kind::Canceled,
            Kind::Internal,
        ] {
            assert_eq!(Kind::of_code(k.code()), k);
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);
    impl Classify for Outer {
        fn kind(&self) -> Kind {
            Kind::NotFound
        }
    }

    #[test]
    fn status_carries_the_class_and_the_cause_chain() {
        let e = Outer(std::io::Error::other("inner"));
        match status(&e) {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), ttrpc::Code::NOT_FOUND);
                assert_eq!(s.message(), "outer: inner");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(describe(&status(&e)), "NOT_FOUND: outer: inner");
    }
}
