//! Leases: which clients hold a session, for how long. A client claims a lease and sends its
//! token with every request; a session is dropped when its client has been idle (no real
//! request) for the idle timeout, or silent (not even a heartbeat) for the much shorter liveness
//! timeout, which frees the slot of a client that crashed. A token is 128 random bits from the
//! operating system, compared in constant time.

use super::target::{Change, TargetBuffer};
use super::worker::ClientId;
use crate::geometry::ViewPlane;
use crate::prompts::{ObjectRef, Prompt};
use crate::volume::Volume;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One client's session: its image, buffer and object (locked for the length of a request, so
/// one client's requests never interleave).
#[derive(Debug)]
pub struct Lease {
    pub client: ClientId,
    pub state: Mutex<LeaseState>,
    born: Instant,
    /// Milliseconds after `born` of the last real request and of the last sign of life.
    last_active_ms: AtomicU64,
    last_seen_ms: AtomicU64,
}

/// What a session holds between requests.
#[derive(Debug, Default)]
pub struct LeaseState {
    /// The uploaded image as a volume (`[k, j, i]` = the array's `[a0, a1, a2]`).
    pub image: Option<Arc<Volume>>,
    pub buffer: Option<TargetBuffer>,
    /// The object the next prompt refines (`None`: the next prompt starts one).
    pub object: Option<ObjectRef>,
    /// Prompts added with `run_prediction: false`, run by the next prediction.
    pub pending: Vec<(Prompt, ViewPlane)>,
    /// Each interaction's change of the buffer (`None`: it changed nothing) with the object
    /// before it, for undo.
    pub history: Vec<(Option<Change>, Option<ObjectRef>)>,
    pub do_autozoom: bool,
}

impl Lease {
    fn new(client: ClientId) -> Self {
        Lease { client, state: Mutex::new(LeaseState { do_autozoom: true, ..Default::default() }), born: Instant::now(), last_active_ms: AtomicU64::new(0), last_seen_ms: AtomicU64::new(0) }
    }
    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }
    /// A real request: postpones the idle timeout.
    pub fn mark_active(&self) {
        let now = self.now_ms();
        self.last_active_ms.store(now, Ordering::Relaxed);
        self.last_seen_ms.store(now, Ordering::Relaxed);
    }
    /// Any request, a heartbeat included.
    pub fn mark_seen(&self) {
        self.last_seen_ms.store(self.now_ms(), Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.last_active_ms.load(Ordering::Relaxed)))
    }
    fn silent_for(&self) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(self.last_seen_ms.load(Ordering::Relaxed)))
    }
    /// The session's state (a poisoned lock, after a panic in another request, is taken over:
    /// the state is plain data, each request leaves it whole or not at all).
    pub fn lock(&self) -> MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a lease could not be had.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseError {
    Missing,
    Unknown,
    Full(usize),
}

/// All leases.
#[derive(Debug)]
pub struct Registry {
    leases: Mutex<HashMap<String, Arc<Lease>>>,
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    pub liveness_timeout: Duration,
    next_client: AtomicU64,
}

impl Registry {
    pub fn new(max_sessions: usize, idle_timeout: Duration, liveness_timeout: Duration) -> Self {
        Registry { leases: Mutex::new(HashMap::new()), max_sessions, idle_timeout, liveness_timeout, next_client: AtomicU64::new(1) }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Lease>>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new lease and its token; `Full` at capacity.
    pub fn claim(&self) -> Result<(String, Arc<Lease>), LeaseError> {
        let mut map = self.map();
        if map.len() >= self.max_sessions {
            return Err(LeaseError::Full(self.max_sessions));
        }
        let token = new_token().map_err(|_| LeaseError::Full(0))?;
        let lease = Arc::new(Lease::new(self.next_client.fetch_add(1, Ordering::Relaxed)));
        map.insert(token.clone(), lease.clone());
        Ok((token, lease))
    }

    /// The lease of a token (marked seen).
    pub fn get(&self, token: Option<&str>) -> Result<Arc<Lease>, LeaseError> {
        let lease = self.peek(token)?;
        lease.mark_seen();
        Ok(lease)
    }

    /// The lease of a token, its clocks untouched.
    pub fn peek(&self, token: Option<&str>) -> Result<Arc<Lease>, LeaseError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(LeaseError::Missing)?;
        let map = self.map();
        // Constant-time over the stored tokens (they all have the same length).
        map.iter().find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes())).map(|(_, l)| l.clone()).ok_or(LeaseError::Unknown)
    }

    /// Drops a lease; returns it when there was one.
    pub fn release(&self, token: Option<&str>) -> Option<Arc<Lease>> {
        let lease = self.peek(token).ok()?;
        self.map().retain(|_, l| !Arc::ptr_eq(l, &lease));
        Some(lease)
    }

    /// Drops the leases idle or silent too long; returns them, with why.
    pub fn sweep(&self) -> Vec<(Arc<Lease>, &'static str)> {
        let mut out = Vec::new();
        self.map().retain(|_, l| {
            let why = if l.silent_for() > self.liveness_timeout {
                "dead"
            } else if l.idle_for() > self.idle_timeout {
                "idle"
            } else {
                return true;
            };
            out.push((l.clone(), why));
            false
        });
        out
    }

    /// Drops every lease (the server is stopping).
    pub fn sweep_all(&self) -> Vec<(Arc<Lease>, &'static str)> {
        self.map().drain().map(|(_, l)| (l, "shutdown")).collect()
    }

    /// Seconds left before the idle timeout.
    pub fn remaining(&self, lease: &Lease) -> f64 {
        self.idle_timeout.saturating_sub(lease.idle_for()).as_secs_f64()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 32 hex digits of operating-system randomness.
fn new_token() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Equal bytes, in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_get_release_and_capacity() {
        let r = Registry::new(2, Duration::from_secs(600), Duration::from_secs(60));
        let (t1, l1) = r.claim().expect("ok");
        let (t2, _) = r.claim().expect("ok");
        assert_eq!(t1.len(), 32);
        assert_ne!(t1, t2);
        assert_eq!(r.claim().expect_err("refused"), LeaseError::Full(2));
        assert!(Arc::ptr_eq(&r.get(Some(&t1)).expect("ok"), &l1));
        assert_eq!(r.get(None).expect_err("refused"), LeaseError::Missing);
        assert_eq!(r.get(Some("")).expect_err("refused"), LeaseError::Missing);
        assert_eq!(r.get(Some("0123")).expect_err("refused"), LeaseError::Unknown);
        assert!(r.release(Some(&t1)).is_some());
        assert!(r.release(Some(&t1)).is_none());
        assert_eq!(r.get(Some(&t1)).expect_err("refused"), LeaseError::Unknown);
        assert!(r.claim().is_ok());
    }

    #[test]
    fn sweep_reaps_the_silent_and_the_idle_but_a_heartbeat_only_proves_life() {
        let r = Registry::new(4, Duration::from_millis(300), Duration::from_millis(120));
        let (busy, b) = r.claim().expect("ok");
        let (beating, h) = r.claim().expect("ok");
        let (_silent, _) = r.claim().expect("ok");
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(50));
            b.mark_active();
            h.mark_seen();
        }
        // 200 ms in: the silent one is past the liveness timeout, the others are not.
        let reaped: Vec<_> = r.sweep().into_iter().map(|(_, why)| why).collect();
        assert_eq!(reaped, vec!["dead"]);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(50));
            b.mark_active();
            h.mark_seen();
        }
        // 400 ms in: heartbeats kept one alive but not active past the idle timeout.
        let reaped: Vec<_> = r.sweep().into_iter().map(|(_, why)| why).collect();
        assert_eq!(reaped, vec!["idle"]);
        assert!(r.get(Some(&busy)).is_ok());
        assert!(r.get(Some(&beating)).is_err());
    }

    #[test]
    fn tokens_compare_in_constant_time_and_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
