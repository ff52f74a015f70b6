//! The ranks of an MPI job (`mpirun -np N kmap prove --mpi …`, or `srun` under Slurm), for the
//! partitioned search: its two exchanges as MPI's all-to-all and all-gather, each in two steps
//! (the sizes, then the bytes).

use kmap_check::search::Ranks;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use crate::error::CliError;

/// This process's place in the job's world. MPI is finalised when it is dropped.
pub struct Mpi {
    world: SimpleCommunicator,
    _universe: Universe,
}

impl Mpi {
    /// Start MPI (a process started without `mpirun` is a job of one rank).
    pub fn init() -> Result<Mpi, CliError> {
        let universe = mpi::initialize().ok_or(CliError::MpiInit)?;
        Ok(Mpi {
            world: universe.world(),
            _universe: universe,
        })
    }
}

/// A message's length as MPI counts it.
fn count(bytes: usize) -> i32 {
    i32::try_from(bytes).expect("a message between two ranks under 2 GiB")
}

/// The offsets of messages of `counts` bytes laid end to end, and their total.
fn offsets(counts: &[i32]) -> (Vec<i32>, usize) {
    let mut at = 0i32;
    let offsets = counts
        .iter()
        .map(|&c| {
            let here = at;
            at = at.checked_add(c).expect("a level's messages under 2 GiB");
            here
        })
        .collect();
    (offsets, at as usize)
}

/// `bytes` cut into messages of `counts` bytes.
fn split(bytes: &[u8], counts: &[i32]) -> Vec<Vec<u8>> {
    let mut rest = bytes;
    counts
        .iter()
        .map(|&c| {
            let (message, tail) = rest.split_at(c as usize);
            rest = tail;
            message.to_vec()
        })
        .collect()
}

impl Ranks for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_to_all(&self, out: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let sent: Vec<i32> = out.iter().map(|m| count(m.len())).collect();
        let mut received = vec![0i32; self.size()];
        self.world.all_to_all_into(&sent[..], &mut received[..]);
        let (sent_at, _) = offsets(&sent);
        let (received_at, total) = offsets(&received);
        // One byte past the messages in each buffer: two empty buffers would share one dangling
        // address, which Open MPI refuses as a send buffer that is the receive buffer.
        let mut bytes = out.concat();
        bytes.push(0);
        let mut into = vec![0u8; total + 1];
        {
            let send = Partition::new(&bytes[..], &sent[..], &sent_at[..]);
            let mut receive = PartitionMut::new(&mut into[..], &received[..], &received_at[..]);
            self.world.all_to_all_varcount_into(&send, &mut receive);
        }
        split(&into, &received)
    }

    fn all_gather(&self, mine: Vec<u8>) -> Vec<Vec<u8>> {
        let mut counts = vec![0i32; self.size()];
        self.world
            .all_gather_into(&count(mine.len()), &mut counts[..]);
        let (at, total) = offsets(&counts);
        let mut into = vec![0u8; total + 1];
        let mut mine = mine;
        mine.push(0);
        {
            let mut receive = PartitionMut::new(&mut into[..], &counts[..], &at[..]);
            let sent = mine.len() - 1;
            self.world
                .all_gather_varcount_into(&mine[..sent], &mut receive);
        }
        split(&into, &counts)
    }
}
