//! Limits per client address: connections open at once, new connections per second, and frames
//! per second. A connection over the first two is refused at accept (HTTP 429); frames over the
//! rate are not dropped but read later, so TCP slows the sender down. Each is off when zero.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits; zero turns one off.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AddressLimitConfig {
    /// Connections one address may have open at once.
    pub max_connections: usize,
    /// New connections one address may open per second (bursts up to twice that).
    pub connects_per_sec: f64,
    /// Frames one address may send per second, over all its connections (bursts up to twice).
    pub frames_per_sec: f64,
}

/// Addresses remembered at most: past this, addresses with no open connection are forgotten.
const MAX_ADDRESSES: usize = 65_536;

#[derive(Debug)]
struct Entry {
    open: usize,
    connect_tokens: f64,
    frame_tokens: f64,
    refilled: Instant,
}

/// The state of every address seen. Shared by the accept loop and the socket readers.
#[derive(Debug)]
pub struct AddressLimits {
    config: AddressLimitConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The address has as many connections open as it may.
    TooManyOpen,
    /// The address opens connections faster than it may.
    TooFast,
}

impl Refused {
    /// The JSON body of the 429 answer.
    pub fn body(self) -> String {
        fibergun_drive::error_json(match self {
            Refused::TooManyOpen => "too many connections from this address",
            Refused::TooFast => "connecting too fast from this address",
        })
    }
}

/// An admitted connection; dropping it counts it closed.
#[derive(Debug)]
pub struct Admitted {
    limits: Arc<AddressLimits>,
    ip: IpAddr,
}

impl Admitted {
    /// The address it came from.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl fibergun_drive::Admission for Admitted {
    /// How long to wait before reading the next frame (zero when within the rate). Takes one
    /// frame's worth of the address's allowance.
    fn frame_delay(&self) -> Duration {
        self.limits.frame_delay(self.ip)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut entries = self.limits.lock();
        if let Some(e) = entries.get_mut(&self.ip) {
            e.open = e.open.saturating_sub(1);
        }
    }
}

impl AddressLimits {
    /// Limits as configured.
    pub fn new(config: AddressLimitConfig) -> Arc<AddressLimits> {
        Arc::new(AddressLimits {
            config,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let c = self.config;
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.len() >= MAX_ADDRESSES && !entries.contains_key(&ip) {
            entries.retain(|_, e| e.open > 0);
        }
        let entry = entries.entry(ip).or_insert(Entry {
            open: 0,
            connect_tokens: 2.0 * c.connects_per_sec,
            frame_tokens: 2.0 * c.frames_per_sec,
            refilled: now,
        });
        refill(entry, &c, now);
        if c.max_connections > 0 && entry.open >= c.max_connections {
            return Err(Refused::TooManyOpen);
        }
        if c.connects_per_sec > 0.0 {
            if entry.connect_tokens < 1.0 {
                return Err(Refused::TooFast);
            }
            entry.connect_tokens -= 1.0;
        }
        entry.open += 1;
        Ok(Admitted {
            limits: self.clone(),
            ip,
        })
    }

    fn frame_delay(&self, ip: IpAddr) -> Duration {
        let c = self.config;
        if c.frames_per_sec <= 0.0 {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&ip) else {
            return Duration::ZERO;
        };
        refill(entry, &c, now);
        entry.frame_tokens -= 1.0;
        if entry.frame_tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-entry.frame_tokens / c.frames_per_sec)
        }
    }
}

fn refill(entry: &mut Entry, c: &AddressLimitConfig, now: Instant) {
    let elapsed = now.saturating_duration_since(entry.refilled).as_secs_f64();
    entry.refilled = now;
    entry.connect_tokens =
        (entry.connect_tokens + elapsed * c.connects_per_sec).min(2.0 * c.connects_per_sec);
    entry.frame_tokens =
        (entry.frame_tokens + elapsed * c.frames_per_sec).min(2.0 * c.frames_per_sec);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fibergun_drive::Admission;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn open_connections_are_capped_and_freed_on_close() {
        let limits = AddressLimits::new(AddressLimitConfig {
            max_connections: 2,
            ..AddressLimitConfig::default()
        });
        let a = limits.admit(IP).unwrap();
        let _b = limits.admit(IP).unwrap();
        assert_eq!(limits.admit(IP).unwrap_err(), Refused::TooManyOpen);
        let other = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
        assert!(
            limits.admit(other).is_ok(),
            "another address is not affected"
        );
        drop(a);
        assert!(limits.admit(IP).is_ok());
    }

    #[test]
    fn connects_and_frames_are_rate_limited() {
        let limits = AddressLimits::new(AddressLimitConfig {
            connects_per_sec: 2.0,
            frames_per_sec: 10.0,
            ..AddressLimitConfig::default()
        });
        let admitted: Vec<_> = (0..4).map(|_| limits.admit(IP).unwrap()).collect();
        assert_eq!(
            limits.admit(IP).unwrap_err(),
            Refused::TooFast,
            "a burst of twice the rate"
        );
        // 20 frames are the burst; the next waits about a tenth of a second per frame over.
        for _ in 0..20 {
            assert_eq!(admitted[0].frame_delay(), Duration::ZERO);
        }
        let wait = admitted[0].frame_delay();
        assert!(
            wait > Duration::from_millis(50) && wait <= Duration::from_millis(110),
            "{wait:?}"
        );
    }

    #[test]
    fn zero_is_no_limit() {
        let limits = AddressLimits::new(AddressLimitConfig::default());
        let all: Vec<_> = (0..1000).map(|_| limits.admit(IP).unwrap()).collect();
        assert_eq!(all[0].frame_delay(), Duration::ZERO);
    }
}
