//! Who may connect to the server, and as whom: the tokens clients present
//! ([`fibergun_rest::tokens`]) and the limits per client address ([`address_limits`]), put
//! together as the runtime's [`Gate`](fibergun_drive::Gate).

pub mod address_limits;

use std::net::IpAddr;
use std::sync::Arc;

use fibergun::access::Principal;
use fibergun_drive::{Admission, Gate, Refusal};

use address_limits::{AddressLimitConfig, AddressLimits};
use fibergun_rest::tokens::{AccessConfig, Unauthorized};

/// The server's gate: tokens at the WebSocket upgrade, address limits at accept.
pub struct ServerGate {
    access: AccessConfig,
    limits: Arc<AddressLimits>,
}

impl ServerGate {
    /// A gate with these tokens and limits.
    pub fn new(access: AccessConfig, limits: AddressLimitConfig) -> ServerGate {
        ServerGate {
            access,
            limits: AddressLimits::new(limits),
        }
    }
}

impl Gate for ServerGate {
    fn admit(&self, ip: IpAddr) -> Result<Box<dyn Admission>, Refusal> {
        match self.limits.admit(ip) {
            Ok(admitted) => Ok(Box::new(admitted)),
            Err(refused) => Err(Refusal {
                status: 429,
                body: refused.body(),
            }),
        }
    }

    fn authenticate<'a>(
        &self,
        header: &dyn Fn(&str) -> Option<&'a str>,
        query: Option<&str>,
    ) -> Result<Principal, Refusal> {
        self.access
            .authenticate(header, query)
            .map_err(|Unauthorized| Refusal {
                status: 401,
                body: Unauthorized::body(),
            })
    }
}
