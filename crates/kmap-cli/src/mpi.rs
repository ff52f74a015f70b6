//! The ranks of an MPI job (`mpirun -np N kmap prove --mpi …`, or `srun` under Slurm), for the
//! partitioned search: its two exchanges as MPI's all-to-all and all-gather, each in rounds of
//! two steps (the sizes, then the bytes) while a rank has more to send.

use kmap_check::search::Ranks;
use mpi::Threading;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use crate::error::CliError;

/// This process's place in the job's world. MPI is finalised when it is dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    /// The most bytes a rank sends in one round of an exchange.
    round: usize,
    _universe: Universe,
}

impl Mpi {
    /// Start MPI (a process started without `mpirun` is a job of one rank), for a search of
    /// `threads` threads in each rank: only the main thread calls MPI (`MPI_THREAD_FUNNELED`).
    ///
    /// A panic from here on aborts the process instead of unwinding: a rank that ends alone,
    /// by unwinding into `MPI_Finalize`, would leave the others waiting for it in the next
    /// exchange for ever, where an aborted rank makes `mpirun` (or `srun`) end the whole job.
    pub fn init(threads: usize, round: usize) -> Result<Mpi, CliError> {
        let (universe, provided) =
            mpi::initialize_with_threading(Threading::Funneled).ok_or(CliError::MpiInit)?;
        if threads > 1 && provided == Threading::Single {
            return Err(CliError::MpiThreads { threads });
        }
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            std::process::abort();
        }));
        Ok(Mpi {
            world: universe.world(),
            round,
            _universe: universe,
        })
    }
}

/// A message's length as MPI counts it (a round's messages are under [`Mpi::round`] bytes).
fn count(bytes: usize) -> i32 {
    i32::try_from(bytes).expect("a round's messages under 2 GiB")
}

/// The offsets of messages of `counts` bytes laid end to end, and their total.
fn offsets(counts: &[i32]) -> (Vec<i32>, usize) {
    let mut at = 0i32;
    let offsets = counts
        .iter()
        .map(|&c| {
            let here = at;
            at = at.checked_add(c).expect("a round's messages under 2 GiB");
            here
        })
        .collect();
    (offsets, at as usize)
}

impl Mpi {
    /// One round of the all-to-all: `out[r]` to rank `r`, appended to `into[r]` from rank `r`.
    fn all_to_all_round(&self, out: &[&[u8]], into: &mut [Vec<u8>]) {
        let sent: Vec<i32> = out.iter().map(|m| count(m.len())).collect();
        let mut received = vec![0i32; self.size()];
        self.world.all_to_all_into(&sent[..], &mut received[..]);
        let (sent_at, _) = offsets(&sent);
        let (received_at, total) = offsets(&received);
        // One byte past the messages in each buffer: two empty buffers would share one dangling
        // address, which Open MPI refuses as a send buffer that is the receive buffer.
        let mut bytes = out.concat();
        bytes.push(0);
        let mut buffer = vec![0u8; total + 1];
        {
            let send = Partition::new(&bytes[..], &sent[..], &sent_at[..]);
            let mut receive = PartitionMut::new(&mut buffer[..], &received[..], &received_at[..]);
            self.world.all_to_all_varcount_into(&send, &mut receive);
        }
        for ((into, &at), &c) in into.iter_mut().zip(&received_at).zip(&received) {
            into.extend_from_slice(&buffer[at as usize..(at + c) as usize]);
        }
    }

    /// Whether any rank says `more`.
    fn anyone(&self, more: bool) -> bool {
        let mut votes = vec![0u8; self.size()];
        self.world.all_gather_into(&u8::from(more), &mut votes[..]);
        votes.contains(&1)
    }
}

impl Ranks for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    /// In rounds: MPI counts bytes in 32-bit integers, so each round sends at most
    /// [`Mpi::round`] bytes from a rank, an equal share to each, until no rank has more.
    fn all_to_all(&self, out: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let share = (self.round / self.size()).max(1);
        let mut into = vec![Vec::new(); self.size()];
        let mut at = 0;
        loop {
            let pieces: Vec<&[u8]> = out
                .iter()
                .map(|m| &m[at.min(m.len())..(at + share).min(m.len())])
                .collect();
            self.all_to_all_round(&pieces, &mut into);
            at += share;
            if !self.anyone(out.iter().any(|m| m.len() > at)) {
                return into;
            }
        }
    }

    /// In rounds, as [`all_to_all`](Self::all_to_all): each round gathers at most
    /// [`Mpi::round`] bytes in all.
    fn all_gather(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        let share = (self.round / self.size()).max(1);
        let mut into = vec![Vec::new(); self.size()];
        let mut at = 0;
        loop {
            let piece = &mine[at.min(mine.len())..(at + share).min(mine.len())];
            let mut counts = vec![0i32; self.size()];
            self.world
                .all_gather_into(&count(piece.len()), &mut counts[..]);
            let (offsets, total) = offsets(&counts);
            let mut buffer = vec![0u8; total + 1];
            // One byte past the piece, as in `all_to_all_round`.
            let mut sent = piece.to_vec();
            sent.push(0);
            {
                let mut receive = PartitionMut::new(&mut buffer[..], &counts[..], &offsets[..]);
                self.world
                    .all_gather_varcount_into(&sent[..piece.len()], &mut receive);
            }
            for ((into, &o), &c) in into.iter_mut().zip(&offsets).zip(&counts) {
                into.extend_from_slice(&buffer[o as usize..(o + c) as usize]);
            }
            at += share;
            if !self.anyone(mine.len() > at) {
                return into;
            }
        }
    }
}
