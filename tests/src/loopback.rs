//! Loopback addresses for test peers that must listen on fixed ports (443, 80), one address per
//! peer, so tests in parallel processes never collide.
//!
//! Each test process takes its own block of 250 addresses in 127.16.0.0–127.78.255.255, chosen by
//! its pid, and every address handed out is checked free on the port it is for: a block shared
//! by two processes whose pids are 16,000 apart still cannot hand both the same address.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// Processes' blocks: pids are spread over this many.
const BLOCKS: u32 = 16_000;
const PER_BLOCK: u32 = 250;

/// A loopback address nothing listens on at `port` now (a peer binds it, or it stays a
/// "nothing listens here" address).
pub fn fresh_ip(port: u16) -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let block = std::process::id() % BLOCKS;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < PER_BLOCK * 4, "no free loopback address left in this test's block");
        let index = block * PER_BLOCK + n % PER_BLOCK + (n / PER_BLOCK) * 7_919;
        let index = index % (BLOCKS * PER_BLOCK);
        let ip = Ipv4Addr::new(
            127,
            16 + (index / 65_536) as u8,
            ((index / 256) % 256) as u8,
            (1 + index % 250) as u8,
        );
        if TcpListener::bind((ip, port)).is_ok() {
            return ip;
        }
    }
}
