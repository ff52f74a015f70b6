//! The ranks of a job: the exchanges the partitioned search needs, and a job of threads.

use std::sync::{Arc, Barrier, Mutex};

/// The ranks of a job, and the two collective exchanges the partitioned search needs. Every
/// rank calls each exchange the same number of times, in the same order.
pub trait Ranks {
    /// This rank, from 0.
    fn rank(&self) -> usize;
    /// How many ranks the job has.
    fn size(&self) -> usize;
    /// Send `out[r]` to rank `r` (one message to every rank, this one included), and return
    /// what every rank sent to this one, by rank.
    fn all_to_all(&self, out: Vec<Vec<u8>>) -> Vec<Vec<u8>>;
    /// Send `mine` to every rank, and return what every rank sent, by rank.
    fn all_gather(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        self.all_to_all(vec![mine; self.size()])
    }
}

/// The ranks of a job as threads of one process (for tests, and to compare with MPI's).
pub struct ThreadRanks {
    rank: usize,
    shared: Arc<Mailbox>,
}

/// What the threads of a job exchange through: `mail[to][from]`.
struct Mailbox {
    size: usize,
    barrier: Barrier,
    mail: Mutex<Vec<Vec<Vec<u8>>>>,
}

impl ThreadRanks {
    /// The `size` ranks of one job, to be moved one to each thread.
    pub fn job(size: usize) -> Vec<ThreadRanks> {
        assert!(size > 0, "a job has at least one rank");
        let shared = Arc::new(Mailbox {
            size,
            barrier: Barrier::new(size),
            mail: Mutex::new(vec![vec![Vec::new(); size]; size]),
        });
        (0..size)
            .map(|rank| ThreadRanks {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }
}

impl Ranks for ThreadRanks {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_to_all(&self, out: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        assert_eq!(out.len(), self.size(), "one message to every rank");
        {
            let mut mail = self.shared.mail.lock().expect("no rank panicked");
            for (to, message) in out.into_iter().enumerate() {
                mail[to][self.rank] = message;
            }
        }
        // Every rank has posted; each takes its own row, and none posts again until all have.
        self.shared.barrier.wait();
        let mine = std::mem::replace(
            &mut self.shared.mail.lock().expect("no rank panicked")[self.rank],
            vec![Vec::new(); self.size()],
        );
        self.shared.barrier.wait();
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ranks_deliver_each_message_to_its_rank() {
        let job = ThreadRanks::job(3);
        let got: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
            let workers: Vec<_> = job
                .iter()
                .map(|ranks| {
                    scope.spawn(move || {
                        let out = (0..3).map(|to| vec![ranks.rank() as u8, to]).collect();
                        let first = ranks.all_to_all(out);
                        let second = ranks.all_gather(vec![9, ranks.rank() as u8]);
                        [first, second].concat()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for (rank, got) in got.iter().enumerate() {
            let expected: Vec<Vec<u8>> = (0..3u8)
                .map(|from| vec![from, rank as u8])
                .chain((0..3u8).map(|from| vec![9, from]))
                .collect();
            assert_eq!(*got, expected);
        }
    }
}
