//! On-the-fly sample generation on worker threads.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};

use super::{Sample, SceneOptions, sample};

/// An endless, deterministic stream of batches of samples rendered by worker threads.
///
/// Batch `b` holds the samples with indices `start + b * batch .. start + (b + 1) * batch`,
/// whatever the number of workers: worker `w` renders batches `w, w + workers, …` into its
/// own bounded queue and the iterator reads the queues in turn. Dropping the stream stops the
/// workers.
pub struct SampleStream {
    queues: Vec<Receiver<Vec<Sample>>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
}

impl SampleStream {
    /// Starts `workers` threads (at least 1) rendering `size` x `size` samples of the world
    /// `seed` from index `start`, `batch` per item.
    pub fn new(
        seed: u64,
        start: u64,
        opts: &SceneOptions,
        size: u32,
        batch: usize,
        workers: usize,
    ) -> SampleStream {
        let workers = workers.max(1);
        let batch = batch.max(1);
        let mut queues = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded::<Vec<Sample>>(2);
            let opts = opts.clone();
            let handle = std::thread::Builder::new()
                .name(format!("partsworld-{w}"))
                .spawn(move || {
                    let mut b = w as u64;
                    loop {
                        let first = start + b * batch as u64;
                        let items: Vec<Sample> = (0..batch as u64)
                            .map(|i| sample(seed, first + i, &opts, size))
                            .collect();
                        if tx.send(items).is_err() {
                            return;
                        }
                        b += workers as u64;
                    }
                })
                .expect("spawn a parts-world worker");
            queues.push(rx);
            handles.push(handle);
        }
        SampleStream {
            queues,
            handles,
            next: 0,
        }
    }
}

impl Iterator for SampleStream {
    type Item = Vec<Sample>;

    fn next(&mut self) -> Option<Vec<Sample>> {
        let q = &self.queues[self.next % self.queues.len()];
        self.next += 1;
        q.recv().ok()
    }
}

impl Drop for SampleStream {
    fn drop(&mut self) {
        // Closing the queues makes every worker's next send fail.
        self.queues.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
