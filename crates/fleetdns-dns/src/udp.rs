//! The UDP fast path: a dedicated OS thread per worker, blocking in `recvmmsg` until at least one
//! query is waiting, answering every query it got, and sending the answers with one `sendmmsg`.
//! Two system calls per wake-up (whatever the batch size) and no async runtime hop on the way:
//! at a fixed query rate most wake-ups carry one query, so the per-wake-up cost is the cost.
//!
//! This module holds the crate's only `unsafe` code ([`sys`]): the `recvmmsg`/`sendmmsg` calls,
//! the conversion of the kernel's socket addresses, and the `setpriority` call behind
//! [`crate::compile_thread`]. Elsewhere (not Linux) the same loop runs
//! on `recv_from`/`send_to`, one datagram at a time.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::Handled;
use crate::metrics::Metrics;
use crate::request::{Counted, Outcome, Transport};
use crate::server::{CachedServed, Forwarding, Served};

/// Datagrams taken per `recvmmsg`.
pub const BATCH: usize = 32;
/// Bytes kept of each datagram; a longer one (no real query is) is dropped.
pub const SLOT: usize = 4096;
/// How often a blocked receive wakes up to look at the cancellation token where it cannot be
/// woken otherwise (not Linux).
#[cfg_attr(target_os = "linux", allow(dead_code))]
const CANCEL_POLL: Duration = Duration::from_millis(200);

/// How a UDP worker thread is run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpOptions {
    /// The worker asks for the real-time class (`SCHED_FIFO`, priority 1); a worker that is
    /// refused (no `CAP_SYS_NICE`) says so and runs at normal priority. A real-time worker
    /// runs the moment a datagram wakes it: a normal one can wait for a table compile or a
    /// manifest parse on its CPU to reach the end of its slice (up to a scheduler tick, 4 ms
    /// measured). The price: a flood of queries then takes the CPU from everything else on
    /// it, up to the kernel's real-time limit (95% by default).
    pub realtime: bool,
}

/// Serves DNS over UDP on `socket` from a dedicated thread until `cancel` fires. The socket is
/// switched to blocking mode; several workers may share one socket (the kernel wakes one waiter
/// per datagram) or each have their own (`SO_REUSEPORT`). On Linux a blocked receive arms no
/// timer: cancellation shuts the socket's reading side down, which wakes every waiter.
/// Forwarded queries run as tracked tasks on the calling tokio runtime, so a slow upstream never
/// stalls the thread. Returns when the thread and those tasks have finished.
pub async fn serve_udp_batched(
    socket: Arc<UdpSocket>,
    served: Arc<Served>,
    options: UdpOptions,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    socket.set_nonblocking(false)?;
    sys::prepare(&socket)?;
    let runtime = tokio::runtime::Handle::current();
    let tracker = TaskTracker::new();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    {
        let (tracker, cancel, socket) = (tracker.clone(), cancel.clone(), socket.clone());
        std::thread::Builder::new()
            .name("fleetdns-udp".into())
            .spawn(move || {
                if options.realtime
                    && let Err(e) = sys::realtime_priority_for_this_thread()
                {
                    tracing::warn!(error = %e, "real-time scheduling refused; this UDP worker runs at normal priority");
                }
                worker(&socket, &served, &cancel, &runtime, &tracker);
                let _ = done_tx.send(());
            })?;
    }
    tokio::select! {
        _ = &mut done_rx => {}
        _ = cancel.cancelled() => {
            sys::wake_receivers(&socket);
            let _ = done_rx.await;
        }
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The receive-answer-send loop of one worker thread.
fn worker(
    socket: &Arc<UdpSocket>,
    served: &Arc<Served>,
    cancel: &CancellationToken,
    runtime: &tokio::runtime::Handle,
    tracker: &TaskTracker,
) {
    let mut batch = sys::Batch::new(BATCH);
    let mut view = CachedServed::new(served);
    let mut zone_counters = ZoneCounters::default();
    while !cancel.is_cancelled() {
        let n = match batch.recv(socket) {
            // Reads shut down (see `wake_receivers`): what came back is no datagram.
            Ok(_) if cancel.is_cancelled() => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems: keep serving.
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let started = Instant::now();
        // The state is loaded once per batch; what each answer counts borrows from it.
        let loaded = view.load();
        let identity = loaded.identity();
        let mut counted = [Counted::default(); BATCH];
        for (i, counted) in counted.iter_mut().enumerate().take(n) {
            let Some(peer) = batch.peer(i) else {
                continue;
            };
            let (packet, out, truncated) = batch.slot(i);
            if truncated {
                served.metrics.dropped(Transport::Udp);
                continue;
            }
            match loaded.handle(packet, peer, Transport::Udp, out) {
                Handled::Answered {
                    outcome: Outcome::Dropped,
                    ..
                } => served.metrics.dropped(Transport::Udp),
                Handled::Forward {
                    forwarder,
                    zone,
                    question,
                } => {
                    let forwarding = Forwarding::new(forwarder, zone, question);
                    let (packet, socket, served) =
                        (packet.to_vec(), socket.clone(), served.clone());
                    tracker.spawn_on(
                        async move {
                            let mut out = Vec::new();
                            forwarding.run(Transport::Udp, &mut out).await;
                            if let Err(e) = sys::send_to_nonblocking(&socket, &out, peer) {
                                tracing::debug!(error = %e, peer = %peer, "udp send failed");
                            }
                            served.done(
                                Transport::Udp,
                                peer,
                                &packet,
                                forwarding.counted(),
                                forwarding.outcome(),
                                &out,
                                started,
                            );
                        },
                        runtime,
                    );
                }
                Handled::Answered {
                    outcome,
                    counted: c,
                } => {
                    *counted = c;
                    batch.mark_ready(i, outcome, peer);
                }
            }
        }
        if let Err(e) = batch.send_ready(socket) {
            tracing::debug!(error = %e, "udp send failed");
        }
        // One clock reading for the batch: its answers were handed to the kernel together.
        let elapsed = started.elapsed();
        for j in 0..batch.ready_len() {
            let (i, outcome, peer) = batch.ready_at(j);
            let (packet, out) = batch.answered(i);
            let zone_counter = counted[i]
                .zone
                .map(|apex| zone_counters.get(&served.metrics, identity, apex));
            served.done_after(
                Transport::Udp,
                peer,
                packet,
                counted[i],
                zone_counter,
                outcome,
                out,
                elapsed,
            );
        }
    }
}

/// The request counters of the zones one worker answered in, by the address of the zone's
/// apex. Valid while the table and forwarder they were found under stay loaded: the worker's
/// cached view holds both, so an address cannot be reused before the identity changes, and a
/// change clears the list. Saves the shared map's lookup per message.
#[derive(Default)]
struct ZoneCounters {
    identity: (usize, usize),
    counters: Vec<(usize, Arc<AtomicU64>)>,
}

impl ZoneCounters {
    fn get(&mut self, metrics: &Metrics, identity: (usize, usize), apex: &[u8]) -> &AtomicU64 {
        if self.identity != identity {
            self.counters.clear();
            self.identity = identity;
        }
        let address = apex.as_ptr() as usize;
        let at = match self.counters.iter().position(|(a, _)| *a == address) {
            Some(at) => at,
            None => {
                self.counters.push((address, metrics.zone_counter_of(apex)));
                self.counters.len() - 1
            }
        };
        &self.counters[at].1
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) mod sys {
    //! `recvmmsg`/`sendmmsg` over buffers allocated once per worker.

    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::SLOT;
    use crate::request::Outcome;

    pub struct Batch {
        /// `count` slots of `SLOT` bytes: the datagrams received.
        bufs: Vec<u8>,
        lens: Vec<usize>,
        truncated: Vec<bool>,
        names: Vec<libc::sockaddr_storage>,
        outs: Vec<Vec<u8>>,
        /// Slots whose answer goes out with the next `send_ready`, with their senders.
        ready: Vec<(usize, Outcome, SocketAddr)>,
        /// Datagrams the last `recv` returned (their headers need resetting).
        received: usize,
        /// Receive headers, pointing into `bufs` and `names` once and for all (the vectors are
        /// never resized, so their heap buffers never move).
        recv_iov: Vec<libc::iovec>,
        recv_hdrs: Vec<libc::mmsghdr>,
        /// Send headers, rebuilt per batch.
        send_iov: Vec<libc::iovec>,
        send_hdrs: Vec<libc::mmsghdr>,
    }

    // SAFETY: the raw pointers in the headers point into buffers the batch owns (which move with
    // it between threads) and are only used by the system calls the batch makes.
    unsafe impl Send for Batch {}

    impl Batch {
        pub fn new(count: usize) -> Self {
            let mut b = Self {
                bufs: vec![0; count * SLOT],
                lens: vec![0; count],
                truncated: vec![false; count],
                // SAFETY: sockaddr_storage is plain old data; all zeros is a valid value.
                names: vec![unsafe { zeroed() }; count],
                outs: (0..count).map(|_| Vec::with_capacity(4096)).collect(),
                ready: Vec::with_capacity(count),
                received: count,
                // SAFETY: iovec and mmsghdr are plain old data (null pointers, zero lengths).
                recv_iov: vec![unsafe { zeroed() }; count],
                recv_hdrs: vec![unsafe { zeroed() }; count],
                send_iov: vec![unsafe { zeroed() }; count],
                send_hdrs: vec![unsafe { zeroed() }; count],
            };
            let base = b.bufs.as_mut_ptr();
            for i in 0..count {
                b.recv_iov[i] = libc::iovec {
                    // SAFETY: i * SLOT + SLOT <= bufs.len(): the slot lies inside `bufs`.
                    iov_base: unsafe { base.add(i * SLOT) }.cast(),
                    iov_len: SLOT,
                };
                let hdr = &mut b.recv_hdrs[i].msg_hdr;
                hdr.msg_name = (&raw mut b.names[i]).cast();
                hdr.msg_iov = &raw mut b.recv_iov[i];
                hdr.msg_iovlen = 1;
            }
            b
        }

        /// Blocks until at least one datagram is waiting (or the read timeout passes), then
        /// takes every waiting datagram up to the batch size. Returns how many.
        pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            self.ready.clear();
            // The kernel rewrote the address lengths and flags of what it returned last time.
            for h in &mut self.recv_hdrs[..self.received] {
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_flags = 0;
            }
            self.received = 0;
            // SAFETY: every header points at live buffers of the stated sizes, owned by `self`
            // and not otherwise borrowed during the call.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.recv_hdrs.as_mut_ptr(),
                    self.recv_hdrs.len() as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n as usize;
            self.received = n;
            for i in 0..n {
                let h = &self.recv_hdrs[i];
                self.lens[i] = (h.msg_len as usize).min(SLOT);
                self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            }
            Ok(n)
        }

        /// The sender of datagram `i`.
        pub fn peer(&self, i: usize) -> Option<SocketAddr> {
            to_socket_addr(&self.names[i], self.recv_hdrs[i].msg_hdr.msg_namelen)
        }

        /// Datagram `i`, its answer buffer, and whether it was cut to the slot size.
        pub fn slot(&mut self, i: usize) -> (&[u8], &mut Vec<u8>, bool) {
            let packet = &self.bufs[i * SLOT..i * SLOT + self.lens[i]];
            (packet, &mut self.outs[i], self.truncated[i])
        }

        /// Datagram `i` and its answer.
        pub fn answered(&self, i: usize) -> (&[u8], &[u8]) {
            (&self.bufs[i * SLOT..i * SLOT + self.lens[i]], &self.outs[i])
        }

        pub fn mark_ready(&mut self, i: usize, outcome: Outcome, peer: SocketAddr) {
            self.ready.push((i, outcome, peer));
        }

        pub fn ready_len(&self) -> usize {
            self.ready.len()
        }

        pub fn ready_at(&self, j: usize) -> (usize, Outcome, SocketAddr) {
            self.ready[j]
        }

        /// Sends every ready answer to its sender, in as few `sendmmsg` calls as the kernel
        /// allows. An answer the kernel refuses is skipped (UDP: the client retries).
        pub fn send_ready(&mut self, socket: &UdpSocket) -> io::Result<()> {
            let k = self.ready.len();
            for (j, &(i, _, _)) in self.ready.iter().enumerate() {
                let out = &mut self.outs[i];
                self.send_iov[j] = libc::iovec {
                    iov_base: out.as_mut_ptr().cast(),
                    iov_len: out.len(),
                };
                let hdr = &mut self.send_hdrs[j].msg_hdr;
                hdr.msg_name = (&raw mut self.names[i]).cast();
                hdr.msg_namelen = self.recv_hdrs[i].msg_hdr.msg_namelen;
                hdr.msg_iov = &raw mut self.send_iov[j];
                hdr.msg_iovlen = 1;
            }
            let mut sent = 0;
            let mut last_err = None;
            while sent < k {
                // SAFETY: headers sent..k point at live answer buffers and addresses owned by
                // `self`, not otherwise borrowed during the call.
                let n = unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        self.send_hdrs.as_mut_ptr().add(sent),
                        (k - sent) as libc::c_uint,
                        0,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    // The first unsent message failed: skip it, send the rest.
                    last_err = Some(e);
                    sent += 1;
                } else {
                    sent += n as usize;
                }
            }
            last_err.map_or(Ok(()), Err)
        }
    }

    /// Blocking receives wait without a timeout: [`wake_receivers`] ends them.
    pub fn prepare(socket: &UdpSocket) -> io::Result<()> {
        socket.set_read_timeout(None)
    }

    /// Shuts the socket's reading side down: every thread blocked in a receive on it returns
    /// at once (with nothing), and so does every later receive.
    pub fn wake_receivers(socket: &UdpSocket) {
        // SAFETY: shutdown takes the descriptor the socket owns and a constant. Linux returns
        // ENOTCONN for an unconnected UDP socket but still marks it shut and wakes its waiters.
        unsafe {
            libc::shutdown(socket.as_raw_fd(), libc::SHUT_RD);
        }
    }

    /// nice 19 for the calling thread (Linux priorities are per thread); used by
    /// [`crate::compile_thread`].
    pub fn lower_priority_of_this_thread() -> io::Result<()> {
        // SAFETY: gettid has no preconditions; setpriority takes plain integers.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `SCHED_FIFO` at the lowest real-time priority for the calling thread; used by
    /// [`super::UdpOptions::realtime`].
    pub fn realtime_priority_for_this_thread() -> io::Result<()> {
        let param = libc::sched_param { sched_priority: 1 };
        // SAFETY: `param` is live for the call, which only reads it; 0 is the calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const param) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// CPU time the calling thread has used (zero where it cannot be read).
    pub fn thread_cpu_time() -> std::time::Duration {
        // SAFETY: timespec is plain old data; all zeros is a valid value.
        let mut ts: libc::timespec = unsafe { zeroed() };
        // SAFETY: `ts` is live for the call, which only writes it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
        if rc != 0 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// Hands memory the allocator holds free back to the kernel. glibc keeps what a thread
    /// freed in that thread's arena; after a whole table compile that is the builder's working
    /// set, several times the table, resident until the next compile reuses it.
    pub fn release_free_memory() {
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim has no preconditions; it only returns unused pages.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    /// One datagram with `MSG_DONTWAIT` (the socket itself blocks): forwarded answers are sent
    /// from async tasks that must not block their runtime thread.
    pub fn send_to_nonblocking(
        socket: &UdpSocket,
        data: &[u8],
        peer: SocketAddr,
    ) -> io::Result<()> {
        // SAFETY: sockaddr_storage is plain old data; all zeros is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = from_socket_addr(peer, &mut storage);
        // SAFETY: `data` and `storage` are live for the call; `len` is the size of the address
        // written into `storage`.
        let n = unsafe {
            libc::sendto(
                socket.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT,
                (&raw const storage).cast(),
                len,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn to_socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        match libc::c_int::from(s.ss_family) {
            libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in, which it is large
                // enough and suitably aligned for.
                let a = unsafe { &*(std::ptr::from_ref(s).cast::<libc::sockaddr_in>()) };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, for sockaddr_in6.
                let a = unsafe { &*(std::ptr::from_ref(s).cast::<libc::sockaddr_in6>()) };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }

    fn from_socket_addr(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in.
                let a = unsafe { &mut *(std::ptr::from_mut(s).cast::<libc::sockaddr_in>()) };
                a.sin_family = libc::AF_INET as libc::sa_family_t;
                a.sin_port = v4.port().to_be();
                a.sin_addr = libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                };
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(v6) => {
                // SAFETY: sockaddr_storage is large enough and aligned for sockaddr_in6.
                let a = unsafe { &mut *(std::ptr::from_mut(s).cast::<libc::sockaddr_in6>()) };
                a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                a.sin6_port = v6.port().to_be();
                a.sin6_flowinfo = v6.flowinfo();
                a.sin6_addr = libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                };
                a.sin6_scope_id = v6.scope_id();
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn socket_addresses_round_trip() {
            for addr in [
                "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1%2]:5353".parse().unwrap(),
                "[2001:db8::7]:65535".parse().unwrap(),
            ] {
                // SAFETY: plain old data.
                let mut s: libc::sockaddr_storage = unsafe { zeroed() };
                let len = from_socket_addr(addr, &mut s);
                assert_eq!(to_socket_addr(&s, len), Some(addr));
            }
            // SAFETY: plain old data.
            let s: libc::sockaddr_storage = unsafe { zeroed() };
            assert_eq!(to_socket_addr(&s, 0), None, "AF_UNSPEC is no peer");
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) mod sys {
    //! One datagram per call with the standard library.

    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    use super::SLOT;
    use crate::request::Outcome;

    pub struct Batch {
        buf: Vec<u8>,
        len: usize,
        truncated: bool,
        peer: Option<SocketAddr>,
        out: Vec<u8>,
        ready: Option<(Outcome, SocketAddr)>,
    }

    impl Batch {
        pub fn new(_count: usize) -> Self {
            Self {
                buf: vec![0; SLOT + 1],
                len: 0,
                truncated: false,
                peer: None,
                out: Vec::with_capacity(4096),
                ready: None,
            }
        }
        pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            self.ready = None;
            let (len, peer) = socket.recv_from(&mut self.buf)?;
            self.truncated = len > SLOT;
            self.len = len.min(SLOT);
            self.peer = Some(peer);
            Ok(1)
        }
        pub fn peer(&self, _i: usize) -> Option<SocketAddr> {
            self.peer
        }
        pub fn slot(&mut self, _i: usize) -> (&[u8], &mut Vec<u8>, bool) {
            (&self.buf[..self.len], &mut self.out, self.truncated)
        }
        pub fn answered(&self, _i: usize) -> (&[u8], &[u8]) {
            (&self.buf[..self.len], &self.out)
        }
        pub fn mark_ready(&mut self, _i: usize, outcome: Outcome, peer: SocketAddr) {
            self.ready = Some((outcome, peer));
        }
        pub fn ready_len(&self) -> usize {
            usize::from(self.ready.is_some())
        }
        pub fn ready_at(&self, _j: usize) -> (usize, Outcome, SocketAddr) {
            let (outcome, peer) = self.ready.expect("ready_len is 1");
            (0, outcome, peer)
        }
        pub fn send_ready(&mut self, socket: &UdpSocket) -> io::Result<()> {
            match self.ready {
                Some((_, peer)) => socket.send_to(&self.out, peer).map(|_| ()),
                None => Ok(()),
            }
        }
    }

    pub fn send_to_nonblocking(
        socket: &UdpSocket,
        data: &[u8],
        peer: SocketAddr,
    ) -> io::Result<()> {
        socket.send_to(data, peer).map(|_| ())
    }

    pub fn lower_priority_of_this_thread() -> io::Result<()> {
        Ok(())
    }

    pub fn release_free_memory() {}

    pub fn thread_cpu_time() -> std::time::Duration {
        std::time::Duration::ZERO
    }

    pub fn realtime_priority_for_this_thread() -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "real-time scheduling is set on Linux only",
        ))
    }

    /// Receives wake up now and then to look at the cancellation token.
    pub fn prepare(socket: &UdpSocket) -> io::Result<()> {
        socket.set_read_timeout(Some(super::CANCEL_POLL))
    }

    pub fn wake_receivers(_socket: &UdpSocket) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;
    use crate::table::{Selection, SoaParams, TableBuilder};
    use crate::wire::encode_name;
    use std::sync::atomic::Ordering::Relaxed;

    fn served() -> Arc<Served> {
        let mut b = TableBuilder::default();
        let soa = SoaParams {
            mname: encode_name("ns.dns.clusterset.local").unwrap(),
            rname: encode_name("hostmaster.clusterset.local").unwrap(),
            serial: 1,
            refresh: 1,
            retry: 1,
            expire: 1,
            minimum: 5,
        };
        let zone = b
            .add_zone(&encode_name("clusterset.local").unwrap(), &soa)
            .unwrap();
        let owner = encode_name("a.clusterset.local").unwrap();
        b.add_ip(
            zone,
            &owner,
            "10.0.0.1".parse().unwrap(),
            5,
            Selection::Fixed,
        );
        let served = Arc::new(Served::new(Arc::new(Metrics::new())));
        served.table.store(Some(Arc::new(b.build(1))));
        served
    }

    fn query(id: u16, name: &str) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&encode_name(name).unwrap());
        p.extend_from_slice(&[0, 1, 0, 1]);
        p
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn answers_a_burst_of_queries_and_stops_on_cancel() {
        let server = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let addr = server.local_addr().unwrap();
        let served = served();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve_udp_batched(
            server,
            served.clone(),
            UdpOptions::default(),
            cancel.clone(),
        ));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // Not a query (QR set): never answered.
        let mut response = query(9999, "a.clusterset.local");
        response[2] |= 0x80;
        client.send_to(&response, addr).unwrap();
        // More than one batch, sent before any is read: every one is answered, by its ID.
        let total = BATCH as u16 * 3 + 5;
        for id in 0..total {
            let name = if id % 2 == 0 {
                "a.clusterset.local"
            } else {
                "nope.clusterset.local"
            };
            client.send_to(&query(id, name), addr).unwrap();
        }
        let mut seen = vec![false; usize::from(total)];
        let mut buf = [0u8; 512];
        for _ in 0..total {
            let (n, _) = client.recv_from(&mut buf).expect("an answer");
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let rcode = buf[3] & 0x0f;
            assert!(n > 12 && buf[2] & 0x80 != 0, "a response");
            assert_eq!(rcode, if id % 2 == 0 { 0 } else { 3 }, "id {id}");
            assert!(!seen[usize::from(id)], "id {id} answered twice");
            seen[usize::from(id)] = true;
        }
        // Every query was answered and the QR packet (sent first) was not.
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(client.recv_from(&mut buf).is_err(), "nothing more arrives");
        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the worker stops after cancel")
            .unwrap()
            .unwrap();
    }

    /// The real-time class is either granted (the thread's policy is then SCHED_FIFO, as the
    /// kernel reports it) or refused with a permission error, never half applied.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_realtime_worker_is_sched_fifo_or_refused() {
        std::thread::spawn(|| match sys::realtime_priority_for_this_thread() {
            Ok(()) => {
                let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
                // Fields after the command name; `policy` is field 41 of the whole line.
                let after = &stat[stat.rfind(')').unwrap() + 2..];
                let policy: u32 = after.split(' ').nth(41 - 3).unwrap().parse().unwrap();
                assert_eq!(policy, 1, "SCHED_FIFO");
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
        })
        .join()
        .unwrap();
    }

    /// A worker's zone counters are the shared ones, found once per zone and table.
    #[test]
    fn zone_counters_are_the_metrics_own_and_follow_the_table() {
        let metrics = Metrics::new();
        let mut counters = ZoneCounters::default();
        let apex = encode_name("clusterset.local").unwrap();
        let other = encode_name("cluster1.local").unwrap();
        counters.get(&metrics, (1, 0), &apex).fetch_add(1, Relaxed);
        counters.get(&metrics, (1, 0), &apex).fetch_add(1, Relaxed);
        counters.get(&metrics, (1, 0), &other).fetch_add(1, Relaxed);
        assert_eq!(counters.counters.len(), 2);
        // Another table: found again, still the same shared counter.
        counters.get(&metrics, (2, 0), &apex).fetch_add(1, Relaxed);
        assert_eq!(counters.counters.len(), 1);
        assert_eq!(
            metrics.zone_counts(),
            vec![
                ("cluster1.local.".to_owned(), 1),
                ("clusterset.local.".to_owned(), 3)
            ]
        );
    }
}
