//! Where answer tables are compiled: a thread of their own at the lowest scheduling priority,
//! so a large compile takes the CPU the UDP workers leave. Not part of the request path; the
//! system call that lowers the priority is in `udp::sys`, with the crate's other `unsafe` code.

use crate::udp;

/// Runs `f` on a thread of its own at the lowest scheduling priority (nice 19) and returns
/// its result: compiling a large answer table then takes the CPU time the UDP workers leave,
/// instead of half of a CPU they need (`serve` compiles every snapshot this way). Under full
/// load it still progresses (nice 19 is a small share, not none). `None` if the thread could not
/// be started or panicked.
pub async fn run_low_priority<T, F>(f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("fleetdns-compile".into())
        .spawn(move || {
            if let Err(e) = udp::sys::lower_priority_of_this_thread() {
                tracing::debug!(error = %e, "cannot lower the compile thread's priority");
            }
            let _ = tx.send(f());
        })
        .ok()?;
    rx.await.ok()
}

/// Gives the kernel back the memory a whole compile freed (the table builder's working set is
/// several times the table it makes, and the allocator would otherwise keep it resident).
/// Costs a walk over the heap: call it after whole compiles, not after every change.
pub fn release_free_memory() {
    udp::sys::release_free_memory();
}

/// CPU time the calling thread has used: what a compile cost, whatever else the machine ran.
pub fn thread_cpu_time() -> std::time::Duration {
    udp::sys::thread_cpu_time()
}
