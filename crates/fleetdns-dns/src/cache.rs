//! The cache for forwarded answers (CDNS-6..8): bounded entries, positive and negative TTL caps
//! and a floor, negative answers cached by their SOA minimum (RFC 2308), TTLs that count down,
//! and stale answers served for a bounded time when upstreams fail (RFC 8767).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::wire::{HEADER_LEN, rcode, rtype};

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

/// Lower-case wire name, qtype, qclass and whether the query had EDNS, packed into one byte
/// string so a lookup borrows a stack buffer instead of allocating. An answer with OPT is never
/// replayed to a client that sent none (RFC 6891 6.1.1).
type Key = Box<[u8]>;

/// Longest packed key: a 255-byte name and 5 bytes of type, class and EDNS.
const KEY_MAX: usize = crate::wire::MAX_NAME + 5;

/// Packs the key into `buf`; `None` for a name longer than any valid one.
fn pack<'b>(
    buf: &'b mut [u8; KEY_MAX],
    name: &[u8],
    qtype: u16,
    qclass: u16,
    edns: bool,
) -> Option<&'b [u8]> {
    let n = name.len();
    if n > crate::wire::MAX_NAME {
        return None;
    }
    buf[..n].copy_from_slice(name);
    buf[n..n + 2].copy_from_slice(&qtype.to_be_bytes());
    buf[n + 2..n + 4].copy_from_slice(&qclass.to_be_bytes());
    buf[n + 4] = u8::from(edns);
    Some(&buf[..n + 5])
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
    hits: std::sync::atomic::AtomicU32,
    /// A prefetch was handed out for this entry.
    prefetching: std::sync::atomic::AtomicBool,
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

#[derive(Debug)]
pub struct Cache {
    limits: CacheLimits,
    entries: Mutex<HashMap<Key, Entry>>,
    pub stats: CacheStats,
}

impl Cache {
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the cached answer for the key into `out` with `id` and TTLs counted down.
    /// `allow_stale` also returns an expired entry still inside the serve-stale window.
    #[allow(clippy::too_many_arguments)]
    pub fn get(
        &self,
        name: &[u8],
        qtype: u16,
        qclass: u16,
        edns: bool,
        id: u16,
        now: Instant,
        allow_stale: bool,
        out: &mut Vec<u8>,
    ) -> Option<Hit> {
        let mut buf = [0u8; KEY_MAX];
        let key = pack(&mut buf, name, qtype, qclass, edns)?;
        let entries = self.lock();
        let Some(e) = entries.get(key) else {
            if !allow_stale {
                self.stats.misses.fetch_add(1, Ordering::Relaxed);
            }
            return None;
        };
        let age = now.saturating_duration_since(e.stored);
        let hit = if age < e.ttl {
            let hits = e.hits.fetch_add(1, Ordering::Relaxed) + 1;
            let left = e.ttl - age;
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
        for &(off, ttl) in e.ttls.iter() {
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
    /// a truncated answer never is.
    pub fn put(
        &self,
        name: &[u8],
        qtype: u16,
        qclass: u16,
        edns: bool,
        response: &[u8],
        now: Instant,
    ) {
        if self.limits.capacity == 0 || response.len() < HEADER_LEN || response[2] & 0x02 != 0 {
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
            hits: std::sync::atomic::AtomicU32::new(0),
            prefetching: std::sync::atomic::AtomicBool::new(false),
        };
        let mut buf = [0u8; KEY_MAX];
        let Some(key) = pack(&mut buf, name, qtype, qclass, edns) else {
            return;
        };
        let key: Key = key.into();
        let mut entries = self.lock();
        if entries.len() >= self.limits.capacity && !entries.contains_key(&key) {
            // Expired entries go first; otherwise one arbitrary entry (HashMap order is random).
            let window = self.limits.serve_stale;
            let before = entries.len();
            entries.retain(|_, e| now.saturating_duration_since(e.stored) < e.ttl + window);
            let mut evicted = before - entries.len();
            if entries.len() >= self.limits.capacity
                && let Some(victim) = entries.keys().next().cloned()
            {
                entries.remove(&victim);
                evicted += 1;
            }
            self.stats
                .evictions
                .fetch_add(evicted as u64, Ordering::Relaxed);
        }
        entries.insert(key, entry);
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

/// Skips a possibly compressed name; pointers end it (never followed).
pub(crate) fn skip_name(p: &[u8], mut pos: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *p.get(pos)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + len,
            0xc0 => return Some(pos + 2),
            _ => return None,
        }
    }
    None
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

    fn ttl_at(p: &[u8], rr: usize) -> u32 {
        let off = 12 + 11 + rr * 16 + 6;
        u32::from_be_bytes(p[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn ttls_count_down_and_the_id_is_the_askers() {
        let cache = Cache::new(CacheLimits::default());
        let t0 = Instant::now();
        cache.put(NAME, 1, 1, false, &response(0, &[100, 60], None), t0);
        let mut out = Vec::new();
        assert_eq!(
            cache.get(
                NAME,
                1,
                1,
                false,
                0x1234,
                t0 + Duration::from_secs(25),
                false,
                &mut out
            ),
            Some(Hit::Fresh)
        );
        assert_eq!(&out[..2], &[0x12, 0x34]);
        assert_eq!(
            (ttl_at(&out, 0), ttl_at(&out, 1)),
            (35, 35),
            "capped at the entry's 60 s"
        );
        // The entry lives as long as its smallest TTL.
        assert_eq!(
            cache.get(
                NAME,
                1,
                1,
                false,
                1,
                t0 + Duration::from_secs(61),
                false,
                &mut out
            ),
            None
        );
        // EDNS and non-EDNS answers are kept apart.
        assert_eq!(cache.get(NAME, 1, 1, true, 1, t0, false, &mut out), None);
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
        cache.put(NAME, 1, 1, false, &response(0, &[3600], None), t0);
        assert!(
            cache
                .get(
                    NAME,
                    1,
                    1,
                    false,
                    1,
                    t0 + Duration::from_secs(29),
                    false,
                    &mut out
                )
                .is_some()
        );
        assert!(
            cache
                .get(
                    NAME,
                    1,
                    1,
                    false,
                    1,
                    t0 + Duration::from_secs(31),
                    false,
                    &mut out
                )
                .is_none(),
            "capped at 30 s"
        );
        cache.put(NAME, 28, 1, false, &response(0, &[1], None), t0);
        assert!(
            cache
                .get(
                    NAME,
                    28,
                    1,
                    false,
                    1,
                    t0 + Duration::from_secs(9),
                    false,
                    &mut out
                )
                .is_some(),
            "floored at 10 s"
        );
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
        cache.put(NAME, 1, 1, false, &response(3, &[], Some((300, 20))), t0);
        assert!(
            cache
                .get(
                    NAME,
                    1,
                    1,
                    false,
                    1,
                    t0 + Duration::from_secs(19),
                    false,
                    &mut out
                )
                .is_some()
        );
        assert_eq!(out[3] & 0x0f, 3);
        assert!(
            cache
                .get(
                    NAME,
                    1,
                    1,
                    false,
                    1,
                    t0 + Duration::from_secs(21),
                    false,
                    &mut out
                )
                .is_none()
        );
        // Without an SOA a negative answer is not cached; SERVFAIL and TC never are.
        cache.put(NAME, 2, 1, false, &response(3, &[], None), t0);
        cache.put(NAME, 3, 1, false, &response(2, &[60], None), t0);
        let mut tc = response(0, &[60], None);
        tc[2] |= 0x02;
        cache.put(NAME, 4, 1, false, &tc, t0);
        assert_eq!(
            cache.len(),
            1,
            "only the first NXDOMAIN (with its SOA) is cached"
        );
        for t in [2, 3, 4] {
            assert!(
                cache
                    .get(NAME, t, 1, false, 1, t0, false, &mut out)
                    .is_none(),
                "type {t} cached"
            );
        }
    }

    #[test]
    fn cdns8_prefetch_once_for_popular_entries_near_expiry() {
        let cache = Cache::new(CacheLimits {
            prefetch: 3,
            min_ttl: 0,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        let mut out = Vec::new();
        cache.put(NAME, 1, 1, false, &response(0, &[100], None), t0);
        let at = |s| t0 + Duration::from_secs(s);
        let mut get = |t| cache.get(NAME, 1, 1, false, 1, t, false, &mut out);
        assert_eq!(get(at(10)), Some(Hit::Fresh));
        assert_eq!(get(at(20)), Some(Hit::Fresh));
        assert_eq!(
            get(at(30)),
            Some(Hit::Fresh),
            "popular, but 70% of the TTL is left"
        );
        assert_eq!(
            get(at(95)),
            Some(Hit::Prefetch),
            "popular and in the last 10%"
        );
        assert_eq!(get(at(96)), Some(Hit::Fresh), "one refresh per entry");
        let cold = Cache::new(CacheLimits {
            prefetch: 3,
            min_ttl: 0,
            ..CacheLimits::default()
        });
        cold.put(NAME, 1, 1, false, &response(0, &[100], None), t0);
        assert_eq!(
            cold.get(NAME, 1, 1, false, 1, at(95), false, &mut out),
            Some(Hit::Fresh),
            "not popular"
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = Cache::new(CacheLimits {
            capacity: 8,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        for t in 0..100u16 {
            cache.put(NAME, t, 1, false, &response(0, &[60], None), t0);
            assert!(cache.len() <= 8);
        }
        assert_eq!(cache.stats.evictions.load(Ordering::Relaxed), 92);
    }

    #[test]
    fn rfc8767_stale_answers_only_inside_the_window_and_only_when_asked() {
        let cache = Cache::new(CacheLimits {
            serve_stale: Duration::from_secs(60),
            min_ttl: 0,
            ..CacheLimits::default()
        });
        let t0 = Instant::now();
        let mut out = Vec::new();
        cache.put(NAME, 1, 1, false, &response(0, &[10], None), t0);
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            cache.get(NAME, 1, 1, false, 1, later, false, &mut out),
            None
        );
        assert_eq!(
            cache.get(NAME, 1, 1, false, 1, later, true, &mut out),
            Some(Hit::Stale)
        );
        assert!(ttl_at(&out, 0) >= 1);
        assert_eq!(
            cache.get(
                NAME,
                1,
                1,
                false,
                1,
                t0 + Duration::from_secs(71),
                true,
                &mut out
            ),
            None
        );
    }
}
