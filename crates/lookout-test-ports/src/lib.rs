//! Loopback ports for tests that start a server later or in another process.
//!
//! A port the kernel hands out for `bind(…:0)` lies in its ephemeral range, the same range it
//! draws from for the local end of every outgoing connection. Between the test's probe and
//! the server's own `bind`, a client socket (a scrape, a database pool, an idle keep-alive
//! connection) can take that port, and the server fails with "address already in use". The
//! ports here come from the 12 000 just below the ephemeral range instead, where no outgoing
//! connection lands; each is probed with a bind before it is handed out, and they are handed
//! out in turn, so one process gets a port again only after going round all 12 000. The
//! starting point is spread by process id and time so that two
//! test processes running at once rarely probe the same ports.

use std::net::TcpListener;
use std::sync::Mutex;

/// How many ports below the ephemeral range are used.
const SPAN: u16 = 12_000;

struct Cursor {
    lo: u16,
    hi: u16,
    next: u16,
}

static CURSOR: Mutex<Option<Cursor>> = Mutex::new(None);

/// The kernel's ephemeral range start (Linux's default when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

fn spread() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // A multiplicative mix so that neighbouring pids start far apart.
    (u64::from(std::process::id()) << 32 | u64::from(nanos)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> 32
}

/// `n` consecutive ports (`n` ≥ 1) that were free a moment ago; returns the first.
fn take(n: u16) -> u16 {
    let mut guard = CURSOR.lock().unwrap_or_else(|e| e.into_inner());
    let cursor = guard.get_or_insert_with(|| {
        let hi = ephemeral_low();
        let lo = hi.saturating_sub(SPAN).max(1_024);
        let width = hi.saturating_sub(lo).max(1);
        Cursor {
            lo,
            hi,
            next: lo + (spread() % u64::from(width)) as u16,
        }
    });
    if cursor.hi.saturating_sub(cursor.lo) < n.saturating_mul(4) {
        // No room below the ephemeral range (an unusual kernel setting): let the kernel choose.
        drop(guard);
        return kernel_port(n);
    }
    let width = cursor.hi - cursor.lo;
    for _ in 0..width {
        if u32::from(cursor.next) + u32::from(n) > u32::from(cursor.hi) {
            cursor.next = cursor.lo;
        }
        let base = cursor.next;
        cursor.next += n;
        if all_free(base, 0..n) {
            return base;
        }
    }
    panic!("no {n} consecutive free loopback ports below {}", cursor.hi);
}

/// True when every port `base + i` for `i` in `offsets` binds (all held together, then freed).
fn all_free(base: u16, offsets: std::ops::Range<u16>) -> bool {
    let want = offsets.len();
    let held: Vec<TcpListener> = offsets
        .map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
        .collect();
    held.len() == want
}

fn kernel_port(n: u16) -> u16 {
    for _ in 0..1_000 {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(base) = l.local_addr().map(|a| a.port()) else {
            continue;
        };
        if base.checked_add(n).is_none() {
            continue;
        }
        if all_free(base, 1..n) {
            return base;
        }
    }
    panic!("no {n} consecutive free loopback ports");
}

/// A loopback port that was free a moment ago, outside the ephemeral range, not one this
/// process handed out before (until the 12 000 have gone round).
pub fn free_port() -> u16 {
    take(1)
}

/// The first of `n` consecutive free loopback ports (a demo's services bind `base..base+n`).
pub fn free_port_block(n: u16) -> u16 {
    take(n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_distinct() {
        let low = ephemeral_low();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let p = free_port();
            assert!(seen.insert(p), "port {p} handed out twice");
            if low >= 2_048 + 64 {
                assert!(p < low, "port {p} inside the ephemeral range from {low}");
            }
            TcpListener::bind(("127.0.0.1", p)).expect("a handed-out port binds");
        }
    }

    #[test]
    fn blocks_are_consecutive_free_and_disjoint_from_single_ports() {
        let single = free_port();
        let base = free_port_block(7);
        assert!(!(base..base + 7).contains(&single));
        for i in 0..7 {
            TcpListener::bind(("127.0.0.1", base + i)).expect("block port binds");
        }
    }

    #[test]
    fn a_port_someone_holds_is_skipped() {
        let _ = free_port();
        let held = {
            let guard = CURSOR.lock().unwrap_or_else(|e| e.into_inner());
            let next = guard.as_ref().map(|c| c.next).expect("cursor set");
            (next, TcpListener::bind(("127.0.0.1", next)).ok())
        };
        for _ in 0..20 {
            assert_ne!(free_port(), held.0);
        }
    }
}
