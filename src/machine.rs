//! The verbs every sans-IO state machine here speaks, so that one driver can step any of them:
//! hand it an input with the time ([`Machine::handle_input`]), drain what it wants done
//! ([`Machine::poll_output`]), and wake it at its deadline ([`Machine::poll_timeout`]).
//! [`Peer`] (a relay or peer) and [`Client`] (a GUN client) are both machines.

use std::time::Instant;

use crate::client::{Client, ClientInput, ClientOutput};
use crate::peer::{ApiMisuse, Input, Now, Output, Peer};

/// A deterministic state machine stepped by a runtime. After every input, drain
/// [`Machine::poll_output`] to `None` before the next input; deliver the machine's timeout
/// input at [`Machine::poll_timeout`].
pub trait Machine {
    /// What it is told.
    type Input<'a>;
    /// What it wants done.
    type Output;
    /// Applies one input at time `now`. Only a runtime's mistakes are errors.
    fn handle_input(&mut self, now: Now, input: Self::Input<'_>) -> Result<(), ApiMisuse>;
    /// The next output, until `None`.
    fn poll_output(&mut self) -> Option<Self::Output>;
    /// When to deliver the timeout input next, or `None` if no timer is armed.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl Machine for Peer {
    type Input<'a> = Input<'a>;
    type Output = Output;

    fn handle_input(&mut self, now: Now, input: Input<'_>) -> Result<(), ApiMisuse> {
        Peer::handle_input(self, now, input)
    }

    fn poll_output(&mut self) -> Option<Output> {
        Peer::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Peer::poll_timeout(self)
    }
}

impl Machine for Client {
    type Input<'a> = ClientInput<'a>;
    type Output = ClientOutput;

    fn handle_input(&mut self, now: Now, input: ClientInput<'_>) -> Result<(), ApiMisuse> {
        Client::handle_input(self, now, input)
    }

    fn poll_output(&mut self) -> Option<ClientOutput> {
        Client::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Client::poll_timeout(self)
    }
}
