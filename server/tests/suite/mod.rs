//! The suite every runtime passes, through its binary ([`crate::BINARY`]) and its library
//! ([`crate::runtime`]): each module is one concern, and each test starts its own servers.

mod access_relay;
mod address_limits;
mod bad_input;
mod durability;
mod embedded;
mod interop;
mod keepalive;
mod memory_limit;
mod memory_store;
mod relay_mesh;
mod remote_cli;
mod s3_relay;
mod sea_relay;
mod shutdown;
mod slow_reader;
mod store_faults;
mod store_full;
mod upstream;
