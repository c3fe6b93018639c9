//! The soak run: a steady mixed load for a bounded time (puts at a fixed rate, GETs of what was
//! written, subscribers receiving every change), sampling the server's memory and the load's
//! latency every second, written as CSV and drawn as a PNG.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use plotters::prelude::*;

use crate::load::wall_ms;
use crate::scenarios::rss_kib;

/// One second of the run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Seconds since the start.
    pub second: u64,
    /// The server's resident memory, MiB.
    pub rss_mib: f64,
    /// Operations (put acks and GET answers) completed in this second.
    pub ops: u64,
    /// Their 50th and 99th percentile latency, ms.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Pushes the subscribers received in this second.
    pub pushes: u64,
    /// Requests that got an error, or no answer within 10 s, in this second.
    pub failures: u64,
}

#[derive(Default)]
struct Window {
    latencies_us: Vec<u64>,
    pushes: u64,
    failures: u64,
}

/// Runs the soak against `url` (server process `pid`) for `seconds`, at `rate` puts a second.
pub fn run(url: &str, pid: u32, seconds: u64, rate: u64) -> Result<Vec<Sample>, String> {
    let window = Arc::new(Mutex::new(Window::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks = {
        let (url, window, stop) = (url.to_owned(), window.clone(), stop.clone());
        std::thread::spawn(move || {
            smol::block_on(async {
                let mut tasks = Vec::new();
                for s in 0..20 {
                    let (url, window, stop) = (url.clone(), window.clone(), stop.clone());
                    tasks.push(smol::spawn(async move {
                        subscriber(&url, s, window, stop).await
                    }));
                }
                for w in 0..4 {
                    let (url, window, stop) = (url.clone(), window.clone(), stop.clone());
                    tasks.push(smol::spawn(async move {
                        worker(&url, w, rate.div_ceil(4), window, stop).await
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            })
        })
    };
    let mut samples = Vec::new();
    for second in 1..=seconds {
        let due = start + Duration::from_secs(second);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let w = std::mem::take(&mut *window.lock().unwrap());
        let mut lat = w.latencies_us;
        lat.sort_unstable();
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        let sample = Sample {
            second,
            rss_mib: rss_kib(pid) as f64 / 1024.0,
            ops: lat.len() as u64,
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            pushes: w.pushes,
            failures: w.failures,
        };
        if second % 10 == 0 {
            eprintln!("{sample:?}");
        }
        samples.push(sample);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tasks.join();
    Ok(samples)
}

/// Puts new nodes at `rate` a second into a shared room, and GETs one of them after each ack.
async fn worker(
    url: &str,
    w: usize,
    rate: u64,
    window: Arc<Mutex<Window>>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let (ws, _) = async_tungstenite::smol::connect_async(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut sent: std::collections::HashMap<String, Instant> = Default::default();
    let mut n = 0u64;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next {
            n += 1;
            next += interval;
            let soul = format!("soak/w{w}/{}", n % 10_000);
            let room = "soak/room";
            let put = format!(
                r##"{{"#":"sp{w}x{n}.","put":{{"{soul}":{{"_":{{"#":"{soul}",">":{{"n":{s}}}}},"n":{n}}},"{room}":{{"_":{{"#":"{room}",">":{{"w{w}":{s}}}}},"w{w}":{n}}}}}}}"##,
                s = wall_ms()
            );
            let get = format!(r##"{{"#":"sg{w}x{n}.","get":{{"#":"{soul}"}}}}"##);
            sent.insert(format!("sp{w}x{n}."), Instant::now());
            sent.insert(format!("sg{w}x{n}."), Instant::now());
            let frame = format!("[{put},{get}]");
            if tx.send(Message::text(frame)).await.is_err() {
                window.lock().unwrap().failures += 1;
                return Err("the server closed the connection".into());
            }
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        let got = smol::future::or(async { rx.next().await }, async {
            smol::Timer::after(wait).await;
            None
        })
        .await;
        if let Some(Ok(Message::Text(text))) = got {
            let parsed: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            let msgs = match parsed {
                serde_json::Value::Array(items) => items,
                one => vec![one],
            };
            let mut w = window.lock().unwrap();
            for m in msgs {
                let Some(at) = m["@"].as_str() else { continue };
                if let Some(t) = sent.remove(at) {
                    if m.get("err").is_some() {
                        w.failures += 1;
                    } else {
                        w.latencies_us.push(t.elapsed().as_micros() as u64);
                    }
                }
            }
        }
        // Requests unanswered for 10 s count as failures.
        let stale: Vec<String> = sent
            .iter()
            .filter(|(_, t)| t.elapsed() > Duration::from_secs(10))
            .map(|(k, _)| k.clone())
            .collect();
        if !stale.is_empty() {
            window.lock().unwrap().failures += stale.len() as u64;
            for k in stale {
                sent.remove(&k);
            }
        }
    }
    Ok(())
}

/// Subscribes to the shared room and counts the pushes it receives.
async fn subscriber(
    url: &str,
    s: usize,
    window: Arc<Mutex<Window>>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let (ws, _) = async_tungstenite::smol::connect_async(url)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let get = format!(r##"{{"#":"sub{s}.","get":{{"#":"soak/room"}}}}"##);
    tx.send(Message::text(get))
        .await
        .map_err(|e| e.to_string())?;
    while !stop.load(Ordering::Relaxed) {
        let got = smol::future::or(async { rx.next().await }, async {
            smol::Timer::after(Duration::from_millis(200)).await;
            None
        })
        .await;
        if let Some(Ok(Message::Text(text))) = got {
            if text.as_str().contains("soak/room") {
                window.lock().unwrap().pushes += 1;
            }
        }
    }
    Ok(())
}

/// Writes the samples as CSV.
pub fn write_csv(samples: &[Sample], path: &Path) -> Result<(), String> {
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "second,rss_mib,ops,p50_ms,p99_ms,pushes,failures").map_err(|e| e.to_string())?;
    for s in samples {
        writeln!(
            f,
            "{},{:.1},{},{:.2},{:.2},{},{}",
            s.second, s.rss_mib, s.ops, s.p50_ms, s.p99_ms, s.pushes, s.failures
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Registers a system font for the plot's text, if one of the usual ones is there.
fn font() -> bool {
    for path in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ] {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// One line of a panel: its name, colour and value.
type Series = (&'static str, RGBColor, fn(&Sample) -> f64);

/// Draws memory and latency over time: two panels, one PNG.
pub fn plot(samples: &[Sample], path: &Path) -> Result<(), String> {
    let text = font();
    let root = BitMapBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(400);
    let end = samples.last().map_or(1, |s| s.second);
    let rss = samples.iter().map(|s| s.rss_mib).fold(1.0, f64::max) * 1.2;
    let p99 = samples.iter().map(|s| s.p99_ms).fold(1.0, f64::max) * 1.2;
    let memory: [Series; 1] = [("RSS MiB", BLUE, |s| s.rss_mib)];
    let latency: [Series; 2] = [
        ("p50 ms", GREEN, |s| s.p50_ms),
        ("p99 ms", RED, |s| s.p99_ms),
    ];
    let panels = [
        (&top, "server resident memory (MiB)", rss, &memory[..]),
        (&bottom, "latency (ms), per second", p99, &latency[..]),
    ];
    for (area, title, top_value, series) in panels {
        let mut builder = ChartBuilder::on(area);
        builder.margin(15);
        if text {
            builder
                .caption(title, ("sans-serif", 22))
                .x_label_area_size(35)
                .y_label_area_size(60);
        }
        let mut chart = builder
            .build_cartesian_2d(0u64..end, 0f64..top_value)
            .map_err(|e| e.to_string())?;
        if text {
            chart
                .configure_mesh()
                .x_desc("seconds")
                .draw()
                .map_err(|e| e.to_string())?;
        }
        for &(name, color, value) in series {
            let line = chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.second, value(s))),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            if text {
                line.label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
        }
        if text {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_soak_samples_every_second_and_draws_its_plot() {
        let dir = tempfile::tempdir().unwrap();
        let (server, url) = crate::stress::tests::relay(dir.path());
        let samples = run(&url, std::process::id(), 3, 200).unwrap();
        assert_eq!(samples.len(), 3);
        assert!(samples.iter().all(|s| s.failures == 0 && s.rss_mib > 0.0));
        assert!(samples.iter().map(|s| s.ops).sum::<u64>() > 300);
        let out = dir.path().join("soak");
        write_csv(&samples, &out.with_extension("csv")).unwrap();
        plot(&samples, &out.with_extension("png")).unwrap();
        let png = std::fs::read(out.with_extension("png")).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        server.shutdown();
    }
}
