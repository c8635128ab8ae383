//! Round trips: on a far link a run costs the number of times it waits for a
//! host's answer, not its CPU. Every place that sends a request and waits for the
//! answer (a connection's handshake, a command, a tunnel, an HTTP request through
//! it, an upload) holds a [`Wait`] while it waits. Waits that overlap — the same
//! question asked of every member at once — make one round, so the count is the
//! run's sequential round trips: what a far link multiplies by its RTT. The engine
//! reads it at the end of each phase (`phase_finished` events) and of the run.
//!
//! A connection's handshake counts as [`CONNECTION`] rounds (TCP, key exchange,
//! authentication), the fixed cost OpenSSH pays too.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// The rounds an SSH connection's opening takes on the wire: the TCP handshake,
/// the key exchange (two), the service request and a public-key authentication.
pub const CONNECTION: u64 = 5;

/// A counter of rounds: waits that start while none is outstanding.
pub struct Rounds {
    in_flight: AtomicUsize,
    rounds: AtomicU64,
}

impl Rounds {
    pub const fn new() -> Rounds {
        Rounds {
            in_flight: AtomicUsize::new(0),
            rounds: AtomicU64::new(0),
        }
    }

    /// A wait of `rounds` sequential round trips (a handshake is several), counted
    /// only when no other wait is outstanding: it overlaps that one otherwise.
    pub fn begin(&self, rounds: u64) -> Wait<'_> {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) == 0 {
            self.rounds.fetch_add(rounds, Ordering::SeqCst);
        }
        Wait { of: self }
    }

    pub fn count(&self) -> u64 {
        self.rounds.load(Ordering::SeqCst)
    }
}

impl Default for Rounds {
    fn default() -> Self {
        Rounds::new()
    }
}

/// Held while waiting for an answer; the wait ends when it is dropped.
pub struct Wait<'a> {
    of: &'a Rounds,
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        self.of.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The process's counter: one run per process.
static RUN: Rounds = Rounds::new();

/// One wait for one answer.
pub fn wait() -> Wait<'static> {
    RUN.begin(1)
}

/// A wait that takes `rounds` round trips on the wire (a handshake).
pub fn wait_rounds(rounds: u64) -> Wait<'static> {
    RUN.begin(rounds)
}

/// The rounds so far in this process.
pub fn so_far() -> u64 {
    RUN.count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_waits_count_each_and_overlapping_ones_count_once() {
        let r = Rounds::new();
        drop(r.begin(1));
        drop(r.begin(1));
        assert_eq!(r.count(), 2);
        // The same question to three members at once: one round.
        let a = r.begin(1);
        let b = r.begin(1);
        let c = r.begin(1);
        drop((a, b, c));
        assert_eq!(r.count(), 3);
        // A handshake is several rounds; one that starts under a longer wait is
        // hidden by it.
        drop(r.begin(CONNECTION));
        assert_eq!(r.count(), 3 + CONNECTION);
        let long = r.begin(1);
        drop(r.begin(CONNECTION));
        drop(long);
        assert_eq!(r.count(), 4 + CONNECTION);
    }
}
