//! The cache for forwarded answers (CDNS-6..8): bounded entries, positive and negative TTL caps
//! and a floor, negative answers cached by their SOA minimum (RFC 2308), TTLs that count down,
//! and stale answers served for a bounded time when upstreams fail (RFC 8767).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::wire::{HEADER_LEN, rcode, rtype, skip_name};

/// Cache limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Entries at most (the cache never grows past this).
    pub capacity: usize,
    /// Cap on the TTL of positive answers, seconds.
    pub max_ttl: u32,
    /// Cap on the TTL of negative answers (NXDOMAIN, NODATA), seconds.
    pub max_negative_ttl: u32,
    /// Floor on any cached TTL, seconds (CDNS-6 `cache` minimum).
    pub min_ttl: u32,
    /// How long past expiry an answer may still be served when every upstream fails (RFC 8767).
    pub serve_stale: Duration,
    /// Refresh an entry asked this many times once less than 10% of its TTL is left
    /// (CoreDNS `prefetch`); 0 turns prefetching off.
    pub prefetch: u32,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_ttl: 3600,
            max_negative_ttl: 1800,
            min_ttl: 5,
            serve_stale: Duration::ZERO,
            prefetch: 0,
        }
    }
}

/// What a cached answer is stored under: the lower-case wire name, type, class and whether the
/// query had EDNS. An answer with OPT is never replayed to a client that sent none (RFC 6891
/// 6.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey<'a> {
    pub lower_name: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    pub edns: bool,
}

/// Whether a lookup may return an answer past its TTL (RFC 8767: only when upstreams fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staleness {
    FreshOnly,
    AllowStale,
}

/// The key packed into one byte string, so a lookup borrows a stack buffer instead of
/// allocating.
type Key = Box<[u8]>;

/// Longest packed key: a 255-byte name and 5 bytes of type, class and EDNS.
const KEY_MAX: usize = crate::wire::MAX_NAME + 5;

/// Shards at most: each has its own lock, so lookups of different names rarely meet.
const SHARDS: usize = 64;

/// How many recently used entries eviction passes over (second chance) before it takes the
/// oldest anyway: eviction never scans the shard.
const SECOND_CHANCES: usize = 8;

impl CacheKey<'_> {
    /// Packs the key into `buf`; `None` for a name longer than any valid one.
    fn pack<'b>(&self, buf: &'b mut [u8; KEY_MAX]) -> Option<&'b [u8]> {
        let n = self.lower_name.len();
        if n > crate::wire::MAX_NAME {
            return None;
        }
        buf[..n].copy_from_slice(self.lower_name);
        buf[n..n + 2].copy_from_slice(&self.qtype.to_be_bytes());
        buf[n + 2..n + 4].copy_from_slice(&self.qclass.to_be_bytes());
        buf[n + 4] = u8::from(self.edns);
        Some(&buf[..n + 5])
    }
}

#[derive(Debug)]
struct Entry {
    /// The response with ID 0.
    packet: Box<[u8]>,
    /// Offsets of every TTL field (OPT excluded) and the TTL stored there.
    ttls: Box<[(usize, u32)]>,
    stored: Instant,
    /// The cached lifetime (the smallest TTL, capped and floored).
    ttl: Duration,
    hits: AtomicU32,
    /// Asked since eviction last passed over it (CLOCK's reference bit).
    referenced: AtomicBool,
    /// A prefetch was handed out for this entry.
    prefetching: AtomicBool,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Hit {
    Fresh,
    /// Fresh, popular and near expiry: the caller should refresh it in the background.
    Prefetch,
    Stale,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub stale: AtomicU64,
}

/// One shard: its entries and their insertion order, the queue eviction takes from.
#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<Key, Entry>,
    order: VecDeque<Key>,
}

impl Shard {
    /// Removes one entry: the oldest that was not asked since eviction last passed, or the
    /// oldest after [`SECOND_CHANCES`] passes. Expired entries never get a second chance.
    fn evict_one(&mut self, now: Instant, stale_window: Duration) -> bool {
        for _ in 0..=SECOND_CHANCES {
            let Some(key) = self.order.pop_front() else {
                return false;
            };
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            let alive = now.saturating_duration_since(entry.stored) < entry.ttl + stale_window;
            if alive && entry.referenced.swap(false, Ordering::Relaxed) {
                self.order.push_back(key);
                continue;
            }
            self.entries.remove(&key);
            return true;
        }
        match self.order.pop_front() {
            Some(key) => self.entries.remove(&key).is_some(),
            None => false,
        }
    }
}

#[derive(Debug)]
pub struct Cache {
    limits: CacheLimits,
    shards: Box<[RwLock<Shard>]>,
    /// Entries per shard at most; shards × this never exceeds the capacity.
    shard_capacity: usize,
    hasher: RandomState,
    pub stats: CacheStats,
}

impl Cache {
    pub fn new(limits: CacheLimits) -> Self {
        let shards = limits.capacity.clamp(1, SHARDS);
        Self {
            limits,
            shards: (0..shards).map(|_| RwLock::default()).collect(),
            shard_capacity: limits.capacity / shards,
            hasher: RandomState::new(),
            stats: CacheStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, packed: &[u8]) -> &RwLock<Shard> {
        let i = self.hasher.hash_one(packed) as usize % self.shards.len();
        &self.shards[i]
    }

    /// Writes the cached answer for `key` into `out` with `id` and TTLs counted down.
    /// [`Staleness::AllowStale`] also returns an expired entry still inside the serve-stale
    /// window. Takes only its shard's read lock.
    pub fn get(
        &self,
        key: &CacheKey<'_>,
        id: u16,
        now: Instant,
        staleness: Staleness,
        out: &mut Vec<u8>,
    ) -> Option<Hit> {
        let allow_stale = staleness == Staleness::AllowStale;
        let mut buf = [0u8; KEY_MAX];
        let packed = key.pack(&mut buf)?;
        let shard = self
            .shard(packed)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(e) = shard.entries.get(packed) else {
            if !allow_stale {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        };
        let age = now.saturating_duration_since(e.stored);
        let hit = if age < e.ttl {
            let hits = e.hits.fetch_add(1, Ordering::Relaxed) + 1;
            e.referenced.store(true, Ordering::Relaxed);
            let left = e.ttl.saturating_sub(age);
            let near_end = left <= (e.ttl / 10).max(Duration::from_secs(1));
            if self.limits.prefetch > 0
                && hits >= self.limits.prefetch
                && near_end
                && !e.prefetching.swap(true, Ordering::Relaxed)
            {
                Hit::Prefetch
            } else {
                Hit::Fresh
            }
        } else if allow_stale && age < e.ttl + self.limits.serve_stale {
            Hit::Stale
        } else {
            if !allow_stale {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        };
        out.clear();
        out.extend_from_slice(&e.packet);
        out[..2].copy_from_slice(&id.to_be_bytes());
        let elapsed = age.as_secs() as u32;
        for &(off, ttl) in &e.ttls {
            // RFC 8767: stale answers go out with a small TTL (30 s suggested; we use the floor).
            let left = match hit {
                // Capped too (CDNS-6): a record never goes out with more than the entry's life.
                Hit::Fresh | Hit::Prefetch => ttl
                    .min(e.ttl.as_secs() as u32)
                    .saturating_sub(elapsed)
                    .max(1),
                Hit::Stale => self.limits.min_ttl.max(1),
            };
            out[off..off + 4].copy_from_slice(&left.to_be_bytes());
        }
        match hit {
            Hit::Fresh | Hit::Prefetch => self.stats.hits.fetch_add(1, Ordering::Relaxed),
            Hit::Stale => self.stats.stale.fetch_add(1, Ordering::Relaxed),
        };
        Some(hit)
    }

    /// Stores an upstream response (already validated). Only NOERROR and NXDOMAIN are cached;
    /// a truncated answer never is. A full shard gives up one entry (see [`Shard::evict_one`]).
    pub fn put(&self, key: &CacheKey<'_>, response: &[u8], now: Instant) {
        if self.shard_capacity == 0 || response.len() < HEADER_LEN || response[2] & 0x02 != 0 {
            return;
        }
        let code = response[3] & 0x0f;
        if code != rcode::NOERROR && code != rcode::NXDOMAIN {
            return;
        }
        let Some(scan) = scan_ttls(response) else {
            return;
        };
        let negative = code == rcode::NXDOMAIN || scan.answers == 0;
        let ttl = if negative {
            // RFC 2308: the SOA's TTL and MINIMUM, the smaller; no SOA → not cached.
            let Some(soa) = scan.negative_ttl else { return };
            soa.min(self.limits.max_negative_ttl)
        } else {
            scan.min_ttl.min(self.limits.max_ttl)
        }
        .max(self.limits.min_ttl);
        let mut packet: Box<[u8]> = response.into();
        packet[0] = 0;
        packet[1] = 0;
        let entry = Entry {
            packet,
            ttls: scan.ttl_fields.into_boxed_slice(),
            stored: now,
            ttl: Duration::from_secs(u64::from(ttl)),
            hits: AtomicU32::new(0),
            referenced: AtomicBool::new(false),
            prefetching: AtomicBool::new(false),
        };
        let mut buf = [0u8; KEY_MAX];
        let Some(packed) = key.pack(&mut buf) else {
            return;
        };
        let mut shard = self
            .shard(packed)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = shard.entries.get_mut(packed) {
            *old = entry;
            return;
        }
        while shard.entries.len() >= self.shard_capacity {
            if !shard.evict_one(now, self.limits.serve_stale) {
                break;
            }
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
        let packed: Key = packed.into();
        shard.order.push_back(packed.clone());
        shard.entries.insert(packed, entry);
    }

    /// Holds the write lock of `key`'s shard (tests: a held shard must not block others).
    #[cfg(test)]
    fn hold_shard(&self, key: &CacheKey<'_>) -> std::sync::RwLockWriteGuard<'_, Shard> {
        let mut buf = [0u8; KEY_MAX];
        let packed = key.pack(&mut buf).expect("valid key");
        self.shard(packed)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Scan {
    answers: u16,
    min_ttl: u32,
    negative_ttl: Option<u32>,
    ttl_fields: Vec<(usize, u32)>,
}

/// Finds every TTL field of a response (OPT excluded), the smallest answer TTL, and the
/// negative TTL from an authority SOA. `None` if the packet does not parse.
fn scan_ttls(p: &[u8]) -> Option<Scan> {
    let count = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
    let (qd, an, ns, ar) = (count(4), count(6), count(8), count(10));
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        pos = skip_name(p, pos)? + 4;
    }
    let mut scan = Scan {
        answers: an,
        min_ttl: u32::MAX,
        negative_ttl: None,
        ttl_fields: Vec::new(),
    };
    for i in 0..(u32::from(an) + u32::from(ns) + u32::from(ar)) {
        pos = skip_name(p, pos)?;
        let t = u16::from_be_bytes([*p.get(pos)?, *p.get(pos + 1)?]);
        let ttl = u32::from_be_bytes(p.get(pos + 4..pos + 8)?.try_into().ok()?);
        let rdlen = u16::from_be_bytes([*p.get(pos + 8)?, *p.get(pos + 9)?]) as usize;
        let rdata = pos + 10;
        if rdata + rdlen > p.len() {
            return None;
        }
        if t != rtype::OPT {
            scan.ttl_fields.push((pos + 4, ttl));
            if i < u32::from(an) {
                scan.min_ttl = scan.min_ttl.min(ttl);
            }
        }
        if t == rtype::SOA && i >= u32::from(an) && i < u32::from(an) + u32::from(ns) && rdlen >= 20
        {
            let minimum = u32::from_be_bytes(p[rdata + rdlen - 4..rdata + rdlen].try_into().ok()?);
            scan.negative_ttl = Some(ttl.min(minimum));
        }
        pos = rdata + rdlen;
    }
    if scan.min_ttl == u32::MAX {
        scan.min_ttl = 0;
    }
    Some(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response for `www.x.` A with the given answer TTLs, or NXDOMAIN with an SOA.
    fn response(code: u8, ttls: &[u32], soa: Option<(u32, u32)>) -> Vec<u8> {
        let mut p = vec![
            0xbe,
            0xef,
            0x81,
            0x80 | code,
            0,
            1,
            0,
            ttls.len() as u8,
            0,
            u8::from(soa.is_some()),
            0,
            0,
        ];
        p.extend_from_slice(b"\x03www\x01x\x00\x00\x01\x00\x01");
        for (i, ttl) in ttls.iter().enumerate() {
            p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            p.extend_from_slice(&ttl.to_be_bytes());
            p.extend_from_slice(&[0, 4, 10, 0, 0, i as u8]);
        }
        if let Some((ttl, minimum)) = soa {
            p.extend_from_slice(&[0xc0, 16, 0, 6, 0, 1]);
            p.extend_from_slice(&ttl.to_be_bytes());
            p.extend_from_slice(&[0, 24, 0xc0, 16, 0xc0, 16]);
            for v in [1u32, 2, 3, 4, minimum] {
                p.extend_from_slice(&v.to_be_bytes());
            }
        }
        p
    }

    const NAME: &[u8] = b"\x03www\x01x\x00";

    /// `www.x.` with the given type, class IN, without EDNS.
    fn key(qtype: u16) -> CacheKey<'static> {
        CacheKey {
            lower_name: NAME,
            qtype,
            qclass: 1,
            edns: false,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ttl_at(p: &[u8], rr: usize) -> u32 {
        let off = 12 + 11 + rr * 16 + 6;
        u32::from_be_bytes(p[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn ttls_count_down_and_the_id_is_the_askers() {
        let cache = Cache::new(CacheLimits::default());
        let t0 = Instant::now();
        let mut out = Vec::new();
        cache.put(&key(1), &response(0, &[100, 60], None), t0);
        let hit = cache.get(
            &key(1),
            0x1234,
            t0 + secs(25),
            Staleness::FreshOnly,
            &mut out,
        );
        assert_eq!(hit, Some(Hit::Fresh));
        assert_eq!(&out[..2], &[0x12, 0x34]);
        assert_eq!(
            (ttl_at(&out, 0), ttl_at(&out, 1)),
            (35, 35),
            "capped at the entry's 60 s"
        );
        // The entry lives as long as its smallest TTL.
        let late = cache.get(&key(1), 1, t0 + secs(61), Staleness::FreshOnly, &mut out);
        assert_eq!(late, None);
        // EDNS and non-EDNS answers are kept apart.
        let edns = CacheKey {
            edns: true,
            ..key(1)
        };
        assert_eq!(
            cache.get(&edns, 1, t0, Staleness::FreshOnly, &mut out),
            None
        );
    }

    #[test]
    fn cdns6_ttl_caps_and_floor() {
        let limits = CacheLimits {
            max_ttl: 30,
            min_ttl: 10,
            ..CacheLimits::default()
        };
        let cache = Cache::new(limits);
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut get = |qtype, at| {
            cache.get(
                &key(qtype),
                1,
                t0 + secs(at),
                Staleness::FreshOnly,
                &mut out,
            )
        };
        cache.put(&key(1), &response(0, &[3600], None), t0);
        assert!(get(1, 29).is_some());
        assert!(get(1, 31).is_none(), "capped at 30 s");
        cache.put(&key(28), &response(0, &[1], None), t0);
        assert!(get(28, 9).is_some(), "floored at 10 s");
    }

    #[test]
    fn rfc2308_negative_answers_live_by_the_soa() {
        let cache = Cache::new(CacheLimits {
            min_ttl: 0,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        let mut out = Vec::new();
        // NXDOMAIN, SOA TTL 300, minimum 20 → 20 s.
        cache.put(&key(1), &response(3, &[], Some((300, 20))), t0);
        assert!(
            cache
                .get(&key(1), 1, t0 + secs(19), Staleness::FreshOnly, &mut out)
                .is_some()
        );
        assert_eq!(out[3] & 0x0f, 3);
        assert!(
            cache
                .get(&key(1), 1, t0 + secs(21), Staleness::FreshOnly, &mut out)
                .is_none()
        );
        // Without an SOA a negative answer is not cached; SERVFAIL and TC never are.
        cache.put(&key(2), &response(3, &[], None), t0);
        cache.put(&key(3), &response(2, &[60], None), t0);
        let mut tc = response(0, &[60], None);
        tc[2] |= 0x02;
        cache.put(&key(4), &tc, t0);
        assert_eq!(
            cache.len(),
            1,
            "only the first NXDOMAIN (with its SOA) is cached"
        );
        for t in [2, 3, 4] {
            assert!(
                cache
                    .get(&key(t), 1, t0, Staleness::FreshOnly, &mut out)
                    .is_none(),
                "type {t} cached"
            );
        }
    }

    #[test]
    fn cdns8_prefetch_once_for_popular_entries_near_expiry() {
        let limits = CacheLimits {
            prefetch: 3,
            min_ttl: 0,
            ..CacheLimits::default()
        };
        let cache = Cache::new(limits);
        let t0 = Instant::now();
        let mut out = Vec::new();
        cache.put(&key(1), &response(0, &[100], None), t0);
        let mut get = |at| cache.get(&key(1), 1, t0 + secs(at), Staleness::FreshOnly, &mut out);
        assert_eq!(get(10), Some(Hit::Fresh));
        assert_eq!(get(20), Some(Hit::Fresh));
        assert_eq!(
            get(30),
            Some(Hit::Fresh),
            "popular, but 70% of the TTL is left"
        );
        assert_eq!(get(95), Some(Hit::Prefetch), "popular and in the last 10%");
        assert_eq!(get(96), Some(Hit::Fresh), "one refresh per entry");
        let cold = Cache::new(limits);
        cold.put(&key(1), &response(0, &[100], None), t0);
        let hit = cold.get(&key(1), 1, t0 + secs(95), Staleness::FreshOnly, &mut out);
        assert_eq!(hit, Some(Hit::Fresh), "not popular");
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = Cache::new(CacheLimits {
            capacity: 8,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        for t in 0..100u16 {
            cache.put(&key(t), &response(0, &[60], None), t0);
            assert!(cache.len() <= 8);
        }
        let evicted = cache.stats.evictions.load(Ordering::Relaxed);
        assert_eq!(
            evicted as usize,
            100 - cache.len(),
            "every entry not held was evicted"
        );
        assert!(evicted >= 92);
    }

    /// CDNS-6: a full cache gives up one entry per insert. It never sweeps every expired entry
    /// (or anything else) in one go under a lock, which with a large cache stalls every query.
    #[test]
    fn cdns6_a_put_into_a_full_cache_evicts_one_entry_without_a_sweep() {
        let cache = Cache::new(CacheLimits {
            capacity: 64 * 16,
            min_ttl: 0,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        // Enough answers that every shard is full.
        for qtype in 0..64 * 16 * 8 {
            cache.put(&key(qtype), &response(0, &[10], None), t0);
        }
        assert_eq!(cache.len(), 64 * 16);
        let before = cache.stats.evictions.load(Ordering::Relaxed);
        // Every entry has expired; one more answer arrives.
        cache.put(&key(u16::MAX), &response(0, &[10], None), t0 + secs(3600));
        assert_eq!(cache.stats.evictions.load(Ordering::Relaxed), before + 1);
        assert_eq!(cache.len(), 64 * 16);
    }

    /// Entries asked since eviction last looked get a second chance; the oldest unasked goes.
    #[test]
    fn eviction_keeps_entries_that_are_asked_for() {
        let cache = Cache::new(CacheLimits {
            capacity: SHARDS * 3,
            min_ttl: 0,
            ..CacheLimits::default()
        });
        let shard_of = |t: u16| {
            let mut buf = [0u8; KEY_MAX];
            std::ptr::from_ref(cache.shard(key(t).pack(&mut buf).unwrap())) as usize
        };
        // Four types that land in one shard of three entries.
        let same: Vec<u16> = (0..u16::MAX)
            .filter(|&t| shard_of(t) == shard_of(0))
            .take(4)
            .collect();
        let (a, b, c, d) = (same[0], same[1], same[2], same[3]);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for t in [a, b, c] {
            cache.put(&key(t), &response(0, &[60], None), t0);
        }
        assert!(
            cache
                .get(&key(a), 1, t0, Staleness::FreshOnly, &mut out)
                .is_some()
        );
        cache.put(&key(d), &response(0, &[60], None), t0);
        let present = |t| {
            cache
                .get(&key(t), 1, t0, Staleness::FreshOnly, &mut Vec::new())
                .is_some()
        };
        assert!(present(a), "the oldest, but asked for");
        assert!(!present(b), "the oldest not asked for");
        assert!(present(c) && present(d));
    }

    /// CDNS-6: a lookup takes only its own shard's lock: a writer holding one shard does not
    /// stop answers from the others.
    #[test]
    fn cdns6_a_held_shard_does_not_block_lookups_in_the_others() {
        let cache = std::sync::Arc::new(Cache::new(CacheLimits::default()));
        let t0 = Instant::now();
        for t in 0..200u16 {
            cache.put(&key(t), &response(0, &[60], None), t0);
        }
        let held = cache.hold_shard(&key(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                let hits = (1..200u16)
                    .filter(|&t| {
                        let mut buf = [0u8; KEY_MAX];
                        let mut other = [0u8; KEY_MAX];
                        let same = key(t)
                            .pack(&mut buf)
                            .map(|p| std::ptr::from_ref(cache.shard(p)))
                            == key(0)
                                .pack(&mut other)
                                .map(|p| std::ptr::from_ref(cache.shard(p)));
                        !same
                            && cache
                                .get(&key(t), 1, t0, Staleness::FreshOnly, &mut out)
                                .is_some()
                    })
                    .count();
                tx.send(hits).ok();
            })
        };
        let hits = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("lookups in other shards finish while one shard is held");
        drop(held);
        reader.join().unwrap();
        assert!(hits > 150, "{hits} lookups answered");
    }

    #[test]
    fn rfc8767_stale_answers_only_inside_the_window_and_only_when_asked() {
        let cache = Cache::new(CacheLimits {
            serve_stale: secs(60),
            min_ttl: 0,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        let mut out = Vec::new();
        cache.put(&key(1), &response(0, &[10], None), t0);
        let later = t0 + secs(30);
        assert_eq!(
            cache.get(&key(1), 1, later, Staleness::FreshOnly, &mut out),
            None
        );
        let stale = cache.get(&key(1), 1, later, Staleness::AllowStale, &mut out);
        assert_eq!(stale, Some(Hit::Stale));
        assert!(ttl_at(&out, 0) >= 1);
        let gone = cache.get(&key(1), 1, t0 + secs(71), Staleness::AllowStale, &mut out);
        assert_eq!(gone, None);
    }
}
