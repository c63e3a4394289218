//! Crash points for tests: `FOYER_FAILPOINTS=after_create_room,after_invite=2` makes the
//! process abort (as a crash would) when it reaches the named point, or its n-th hit;
//! `worker_paused` keeps the lifecycle worker idle (work then only happens on demand).
//! Unset in production, it costs one lookup of a parsed map.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

fn points() -> &'static Mutex<HashMap<String, u64>> {
    static POINTS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    POINTS.get_or_init(|| {
        let spec = std::env::var("FOYER_FAILPOINTS").unwrap_or_default();
        let map = spec
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| match s.split_once('=') {
                Some((name, n)) => (name.trim().to_owned(), n.trim().parse().unwrap_or(1)),
                None => (s.trim().to_owned(), 1),
            })
            .collect();
        Mutex::new(map)
    })
}

/// Aborts the process when the failpoint `name` is armed and due.
pub fn hit(name: &str) {
    let Ok(mut points) = points().lock() else {
        return;
    };
    if let Some(remaining) = points.get_mut(name) {
        *remaining = remaining.saturating_sub(1);
        if *remaining == 0 {
            eprintln!("foyer: failpoint {name} reached; aborting");
            std::process::abort();
        }
    }
}

/// Whether the failpoint `name` is armed (for switches such as `worker_paused`).
pub fn armed(name: &str) -> bool {
    points().lock().map(|p| p.contains_key(name)).unwrap_or(false)
}
