//! `fibergun-threads` serves /gun only: the flags of the HTTP routes are refused with a reason.

use std::process::Command;

#[test]
fn the_http_route_flags_are_refused_with_a_reason() {
    for flags in [
        vec!["--static", "."],
        vec!["--cors-origin", "http://app.test"],
        vec!["--max-body-bytes", "10"],
    ] {
        let out = Command::new(crate::BINARY)
            .arg("serve")
            .args(&flags)
            .output()
            .expect("run fibergun-threads");
        assert_eq!(out.status.code(), Some(2), "{flags:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("serves /gun only"), "{flags:?}: {err}");
    }
}
