//! Fork-join over persistent helper threads that spin for a while before they sleep.
//!
//! A forward pass of the engine runs as a few large jobs at once (M on one thread and K on
//! another, or the frames in shares). Between two passes a helper thread is idle for about
//! a millisecond (M and K do not take equally long, and the caller pre-processes the next
//! frames). A thread that goes to sleep for that long lets its (virtual) core halt, and
//! waking it costs a futex wake-up, an inter-processor interrupt and, on a virtual machine,
//! the hypervisor scheduling the core again: measured with the shipped models on a 2-core
//! VM, a rayon scope took 0.04–0.54 ms to start the helper's job and 0.15–0.74 ms to return
//! after both jobs had finished. So the helpers here (and a caller waiting for them) spin on
//! an atomic for [`SPIN`] before they park: back-to-back passes never sleep, and a pass's
//! hand-offs cost microseconds. An idle engine's helpers park after [`SPIN`] and cost
//! nothing; a spinning thread yields its core to other runnable threads now and then.
//!
//! Spinning only pays when the next job comes soon. A live camera at 30 fps brings a frame
//! every 33 ms: a helper spinning [`SPIN`] after each pass burns that much CPU for nothing
//! (about a quarter of the element's CPU time with one 1080p stream). So each helper learns
//! from its own recent idle periods ([`SpinPolicy`]): while most of them ended within
//! [`SPIN`] it spins that long, otherwise only [`SHORT_SPIN`], enough to catch the next job
//! of the same pass (the models after the pre-processing's bands).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long a helper waiting for work, or a caller waiting for its helpers, spins before it
/// parks. Longer than the gap between two passes of a stream (about 1 ms with the shipped
/// models), short enough that an idle engine soon stops using the CPU.
pub const SPIN: Duration = Duration::from_millis(2);

/// How long a helper spins for more work while its recent idle periods were mostly longer
/// than [`SPIN`] (see [`SpinPolicy`]): the gap between two jobs of one pass.
pub const SHORT_SPIN: Duration = Duration::from_micros(100);

/// Spins between two looks at the clock (and, every [`YIELD_EVERY`] looks, a yield).
const SPINS_PER_LOOK: u32 = 64;
const YIELD_EVERY: u32 = 16;

/// A job with its borrows erased (see [`ForkJoin::run`] for why that is sound).
type Job = Box<dyn FnOnce() + Send + 'static>;

type Panic = Box<dyn Any + Send + 'static>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits until `ready()` holds: spins for `spin`, then parks (the thread that makes it true
/// unparks this one after it does).
fn wait_until(spin: Duration, ready: impl Fn() -> bool) {
    let start = Instant::now();
    let mut looks = 0u32;
    while !ready() {
        if start.elapsed() < spin {
            for _ in 0..SPINS_PER_LOOK {
                std::hint::spin_loop();
            }
            looks += 1;
            if looks.is_multiple_of(YIELD_EVERY) {
                std::thread::yield_now();
            }
        } else {
            // An `unpark` between the look and here makes `park` return at once.
            std::thread::park();
        }
    }
}

/// How long a helper spins when it runs out of work, from how its recent idle periods ended:
/// [`SPIN`] while at least [`SpinPolicy::SPIN_FROM`] of them (a moving average) ended within
/// [`SPIN`], as between back-to-back passes; [`SHORT_SPIN`] otherwise, as between the frames
/// of a live source.
#[derive(Debug, Clone, Copy)]
struct SpinPolicy {
    /// Moving average of "the idle period ended within [`SPIN`]" (1 or 0).
    soon: f32,
}

impl SpinPolicy {
    /// Weight of the latest idle period in the average.
    const WEIGHT: f32 = 1.0 / 8.0;
    /// The share of recent idle periods ending within [`SPIN`] from which a helper spins
    /// that long. The jobs of one pass (bands of pre-processing, then the models) come
    /// microseconds apart: with frames far apart, half the periods are short, and the
    /// helper must still not spin after the pass.
    const SPIN_FROM: f32 = 0.75;

    /// A new helper spins (an engine starts with back-to-back passes).
    fn new() -> Self {
        Self { soon: 1.0 }
    }

    fn spin(&self) -> Duration {
        if self.soon >= Self::SPIN_FROM {
            SPIN
        } else {
            SHORT_SPIN
        }
    }

    /// Records an idle period that lasted `idle`.
    fn idled(&mut self, idle: Duration) {
        let soon = if idle <= SPIN { 1.0 } else { 0.0 };
        self.soon += (soon - self.soon) * Self::WEIGHT;
    }
}

/// What a helper has: nothing to do, jobs to run, or its jobs done.
const IDLE: u8 = 0;
const GIVEN: u8 = 1;
const DONE: u8 = 2;

/// The hand-over between the caller of [`ForkJoin::run`] and one helper thread.
struct Slot {
    state: AtomicU8,
    jobs: Mutex<Vec<Job>>,
    /// The first panic of the helper's jobs, resumed by the caller.
    panic: Mutex<Option<Panic>>,
    /// The thread waiting in [`ForkJoin::run`], unparked when the jobs are done.
    caller: Mutex<Option<Thread>>,
    stop: AtomicBool,
}

impl Slot {
    fn serve(&self) {
        let mut policy = SpinPolicy::new();
        loop {
            let idle_since = Instant::now();
            wait_until(policy.spin(), || {
                self.state.load(Ordering::Acquire) == GIVEN || self.stop.load(Ordering::Acquire)
            });
            if self.state.load(Ordering::Acquire) != GIVEN {
                return;
            }
            policy.idled(idle_since.elapsed());
            let jobs = std::mem::take(&mut *lock(&self.jobs));
            for job in jobs {
                // The job (and its borrows) is consumed here, before `DONE` is published.
                if let Err(panic) = catch_unwind(AssertUnwindSafe(job)) {
                    lock(&self.panic).get_or_insert(panic);
                }
            }
            let caller = lock(&self.caller).take();
            self.state.store(DONE, Ordering::Release);
            if let Some(caller) = caller {
                caller.unpark();
            }
        }
    }
}

/// Runs groups of jobs at the same time: the caller's thread and `width - 1` persistent
/// helper threads (each helper with a single libtorch intra-op thread and without autograd;
/// the caller sets up its own thread).
///
/// Parallelism at the level of whole forward passes (or whole batches): no fine-grained
/// barriers between threads, so a core taken by another process slows one job down instead
/// of stalling every operator of every job (which is what libtorch's OpenMP intra-op
/// parallelism does on a busy machine). The threads live as long as the value, so a pass
/// costs no thread start, and they spin between passes (see the module documentation).
pub struct ForkJoin {
    helpers: Vec<(Arc<Slot>, JoinHandle<()>)>,
    /// Held by the `run` under way (the helpers' slots hold one group of jobs).
    running: Mutex<()>,
}

impl ForkJoin {
    /// A fork-join for up to `width` jobs at once (`width <= 1`: no threads, jobs run in
    /// turn).
    pub fn new(width: usize) -> Result<Self, String> {
        let mut helpers = Vec::new();
        for i in 1..width {
            let slot = Arc::new(Slot {
                state: AtomicU8::new(IDLE),
                jobs: Mutex::new(Vec::new()),
                panic: Mutex::new(None),
                caller: Mutex::new(None),
                stop: AtomicBool::new(false),
            });
            let served = slot.clone();
            let handle = std::thread::Builder::new()
                .name(format!("unmask-fork-{i}"))
                .spawn(move || {
                    tch::set_num_threads(1);
                    let _no_grad = tch::no_grad_guard();
                    served.serve();
                })
                .map_err(|e| format!("cannot start {} worker threads: {e}", width - 1))?;
            helpers.push((slot, handle));
        }
        Ok(Self {
            helpers,
            running: Mutex::new(()),
        })
    }

    /// How many jobs run at once: the caller's thread and the helpers.
    pub fn width(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `jobs` at once, the first on the current thread (the others spread over the
    /// helpers, in turn where there are more jobs than threads); returns their results in
    /// order. A panicking job panics here once all have finished. While another `run` is
    /// under way (on another thread, or from inside one of its jobs) the jobs run in turn on
    /// the current thread.
    pub fn run<'a, R: Send + 'a>(&self, jobs: Vec<impl FnOnce() -> R + Send + 'a>) -> Vec<R> {
        let running = match self.running.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if running.is_none() || self.helpers.is_empty() || jobs.len() < 2 {
            return jobs.into_iter().map(|j| j()).collect();
        }
        let mut results: Vec<Option<R>> = jobs.iter().map(|_| None).collect();
        let mut jobs = jobs.into_iter();
        let first = jobs.next().expect("at least two jobs");
        let (head, rest) = results.split_first_mut().expect("one result per job");
        let mut given = vec![false; self.helpers.len()];
        for (i, (job, result)) in jobs.zip(rest.iter_mut()).enumerate() {
            let h = i % self.helpers.len();
            let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || *result = Some(job()));
            // SAFETY: only the lifetime is changed. `run` neither returns nor unwinds before
            // every helper given a job has published `DONE`, which it does after the job has
            // been called (and so dropped), so the job's borrows (the caller's data, `result`)
            // outlive every use of them.
            let job: Job = unsafe { std::mem::transmute(job) };
            lock(&self.helpers[h].0.jobs).push(job);
            given[h] = true;
        }
        let me = std::thread::current();
        for ((slot, handle), _) in self.helpers.iter().zip(&given).filter(|(_, g)| **g) {
            *lock(&slot.caller) = Some(me.clone());
            slot.state.store(GIVEN, Ordering::Release);
            handle.thread().unpark();
        }
        let mut panic = catch_unwind(AssertUnwindSafe(|| *head = Some(first()))).err();
        for ((slot, _), _) in self.helpers.iter().zip(&given).filter(|(_, g)| **g) {
            // Bounded by the helper's jobs, which run now: spin.
            wait_until(SPIN, || slot.state.load(Ordering::Acquire) == DONE);
            slot.state.store(IDLE, Ordering::Release);
            if let Some(p) = lock(&slot.panic).take() {
                panic.get_or_insert(p);
            }
        }
        if let Some(panic) = panic {
            resume_unwind(panic);
        }
        results
            .into_iter()
            .map(|r| r.expect("every job ran"))
            .collect()
    }
}

impl Drop for ForkJoin {
    fn drop(&mut self) {
        for (slot, handle) in &self.helpers {
            slot.stop.store(true, Ordering::Release);
            handle.thread().unpark();
        }
        for (_, handle) in self.helpers.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_with_more_jobs_than_threads() {
        let fork = ForkJoin::new(3).expect("threads");
        for round in 0..50 {
            let jobs: Vec<_> = (0..7).map(|i| move || i * 10 + round).collect();
            let expected: Vec<_> = (0..7).map(|i| i * 10 + round).collect();
            assert_eq!(fork.run(jobs), expected);
        }
    }

    #[test]
    fn jobs_run_at_the_same_time() {
        let fork = ForkJoin::new(2).expect("threads");
        let ids = fork.run(vec![|| std::thread::current().id(), || {
            std::thread::current().id()
        }]);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(ids[0], std::thread::current().id());
    }

    #[test]
    fn jobs_may_borrow_and_mutate_the_callers_data() {
        let fork = ForkJoin::new(2).expect("threads");
        let mut halves = [vec![1u64; 1000], vec![2u64; 1000]];
        let [a, b] = &mut halves;
        let sums = fork.run(vec![
            Box::new(|| {
                a.iter_mut().for_each(|x| *x += 1);
                a.iter().sum::<u64>()
            }) as Box<dyn FnOnce() -> u64 + Send>,
            Box::new(|| {
                b.iter_mut().for_each(|x| *x *= 3);
                b.iter().sum::<u64>()
            }),
        ]);
        assert_eq!(sums, vec![2000, 6000]);
        assert_eq!(halves[1][0], 6);
    }

    #[test]
    fn a_helpers_panic_reaches_the_caller_after_all_jobs_and_the_pool_still_works() {
        let fork = ForkJoin::new(2).expect("threads");
        let finished = AtomicBool::new(false);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            fork.run(vec![
                Box::new(|| {
                    std::thread::sleep(Duration::from_millis(20));
                    finished.store(true, Ordering::SeqCst);
                }) as Box<dyn FnOnce() + Send>,
                Box::new(|| panic!("job failed")),
            ])
        }));
        let message = caught.expect_err("the panic is resumed");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"job failed"));
        assert!(
            finished.load(Ordering::SeqCst),
            "the caller's job had finished"
        );
        assert_eq!(fork.run(vec![|| 1, || 2]), vec![1, 2]);
    }

    #[test]
    fn helpers_that_parked_after_spinning_still_take_work() {
        let fork = ForkJoin::new(2).expect("threads");
        for _ in 0..3 {
            std::thread::sleep(SPIN * 3);
            let ids = fork.run(vec![|| std::thread::current().id(), || {
                std::thread::current().id()
            }]);
            assert_ne!(ids[0], ids[1]);
        }
    }

    #[test]
    fn helpers_spin_long_only_while_jobs_come_soon() {
        let mut policy = SpinPolicy::new();
        assert_eq!(policy.spin(), SPIN);
        // Frames of a live source: the pre-processing's bands, the models a few µs later,
        // then nothing for 33 ms.
        for _ in 0..20 {
            policy.idled(Duration::from_micros(20));
            policy.idled(Duration::from_millis(33));
        }
        assert_eq!(policy.spin(), SHORT_SPIN);
        // Back to back again: spinning long pays within a few passes.
        let mut passes = 0;
        while policy.spin() == SHORT_SPIN {
            policy.idled(Duration::from_micros(900));
            passes += 1;
        }
        assert!(passes <= 8, "{passes} passes");
        // One late job among many soon ones does not stop the spinning.
        for _ in 0..30 {
            policy.idled(Duration::from_micros(900));
        }
        policy.idled(Duration::from_millis(40));
        assert_eq!(policy.spin(), SPIN);
    }

    #[test]
    fn a_run_from_inside_a_job_runs_its_jobs_in_turn() {
        let fork = ForkJoin::new(2).expect("threads");
        let inner = fork.run(vec![
            Box::new(|| fork.run(vec![|| 1, || 2])) as Box<dyn FnOnce() -> Vec<i32> + Send>,
            Box::new(|| fork.run(vec![|| 3, || 4])),
        ]);
        assert_eq!(inner, vec![vec![1, 2], vec![3, 4]]);
    }

    #[test]
    fn one_thread_runs_the_jobs_in_turn() {
        let fork = ForkJoin::new(1).expect("no threads");
        let me = std::thread::current().id();
        let ids = fork.run(vec![|| std::thread::current().id(), || {
            std::thread::current().id()
        }]);
        assert_eq!(ids, vec![me, me]);
    }
}
