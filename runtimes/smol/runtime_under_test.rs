// Included by the shared tests that use the library: the runtime this package builds.
pub use fibergun_smol as runtime;
