//! Who may connect: a runtime asks its [`Gate`] when it accepts a TCP connection and when a
//! request asks to become a WebSocket. The policy is the product's (tokens, limits per address);
//! the runtime only carries out the answer. [`OpenGate`], the default, admits everyone as
//! anonymous.

use std::net::IpAddr;
use std::time::Duration;

use fibergun::access::Principal;

/// A refusal, answered over HTTP before any WebSocket exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status (429 at accept, 401 at the upgrade, say).
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

impl Refusal {
    /// The status line's reason phrase.
    pub fn reason(&self) -> &'static str {
        match self.status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Refused",
        }
    }
}

/// What an admitted connection carries while it is open; dropping it counts the connection
/// closed.
pub trait Admission: Send + Sync {
    /// How long to wait before reading the next frame (zero when within the rate): a runtime
    /// reads a fast sender later instead of refusing its frames, so TCP slows it down.
    fn frame_delay(&self) -> Duration;
}

/// Who may connect, and as whom.
pub trait Gate: Send + Sync + 'static {
    /// A TCP connection from `ip` was accepted: admit it, or refuse it.
    fn admit(&self, ip: IpAddr) -> Result<Box<dyn Admission>, Refusal>;

    /// A request asks to become a WebSocket: who it comes from. `header` looks a request
    /// header up by name (any case); `query` is the URL's query.
    fn authenticate<'a>(
        &self,
        header: &dyn Fn(&str) -> Option<&'a str>,
        query: Option<&str>,
    ) -> Result<Principal, Refusal>;
}

/// Admits every connection, unpaced and anonymous.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenGate;

struct Unpaced;

impl Admission for Unpaced {
    fn frame_delay(&self) -> Duration {
        Duration::ZERO
    }
}

impl Gate for OpenGate {
    fn admit(&self, _ip: IpAddr) -> Result<Box<dyn Admission>, Refusal> {
        Ok(Box::new(Unpaced))
    }

    fn authenticate<'a>(
        &self,
        _header: &dyn Fn(&str) -> Option<&'a str>,
        _query: Option<&str>,
    ) -> Result<Principal, Refusal> {
        Ok(Principal::Anonymous)
    }
}
