//! `--memory-limit`: frames queued to connections that do not read are held to half the limit
//! over all connections (past it, those holding more than their share are dropped, and may
//! reconnect), so a few stalled readers cannot grow the server, while a reader that keeps up
//! gets everything. Declared by each runtime's package.

use crate::BINARY;

use std::net::TcpStream;
use std::time::Duration;

use fibergun_testkit::{now_ms, peak_rss_mib, put_msg, temp_data_dir, Peer, Server};
use serde_json::json;

#[test]
fn stalled_readers_cannot_grow_the_server_past_its_memory_limit() {
    let data = temp_data_dir();
    // Each connection alone may queue 256 MiB: only the memory limit stops them.
    let mut server = Server::start(
        BINARY,
        data.path(),
        &[
            "--memory-limit",
            "32M",
            "--max-outbound-queue-bytes",
            "268435456",
        ],
    );
    // Stalled readers: subscribe, then never read (and keep their receive buffers small).
    let mut stalled = Vec::new();
    for i in 0..6 {
        let mut p = Peer::connect(&server.ws_url());
        let s: &TcpStream = p.stream();
        let _ = socket2_small_buffer(s);
        assert!(p.send_json(&json!({"#": format!("s{i}"), "get": {"#": "hot"}})));
        stalled.push(p);
    }
    let mut fast = Peer::connect(&server.ws_url());
    fast.get("f0", "hot", None, Duration::from_secs(10));
    let mut writer = Peer::connect(&server.ws_url());
    let big = "z".repeat(100_000);
    let updates = 300;
    let state = now_ms();
    for i in 0..updates {
        let value = format!("{i}:{big}");
        writer.put_ok(
            &put_msg(
                &format!("w{i}"),
                "hot",
                &[("v", json!(value))],
                state + i as f64,
            ),
            Duration::from_secs(30),
        );
        // The fast reader keeps up.
        while fast.pump(Duration::from_millis(1)) {}
    }
    // The fast reader saw the last update.
    let last = format!("{}:", updates - 1);
    let seen = fast.wait_for(Duration::from_secs(30), |m| {
        m["put"]["hot"]["v"]
            .as_str()
            .is_some_and(|v| v.starts_with(&last))
    });
    assert!(
        seen.is_some(),
        "the reader that kept up missed the last update"
    );
    // 6 stalled readers x 30 MB of pushes would be 180 MB queued without the limit.
    let peak = peak_rss_mib(server.pid().unwrap());
    server.assert_alive("after the stalled readers");
    assert!(
        peak < 150.0,
        "peak RSS {peak:.0} MiB with a 32 MiB memory limit"
    );
    eprintln!("peak RSS {peak:.0} MiB with 6 stalled readers and a 32 MiB limit");
}

/// A small receive buffer, so a stalled reader stalls early.
fn socket2_small_buffer(stream: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let size: libc_int = 16 * 1024;
    // SAFETY: setsockopt on a socket this test owns, with a valid pointer and length.
    let r = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            1, /* SOL_SOCKET */
            8, /* SO_RCVBUF */
            &size as *const libc_int as *const std::ffi::c_void,
            std::mem::size_of::<libc_int>() as u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[allow(non_camel_case_types)]
type libc_int = i32;

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
}
