//! The machine underneath: everything that names an x86_64 register, instruction, descriptor
//! table or device lives below `arch/`, so that the scheduler, the platform and the workload read
//! as kernel code, not as assembly. One architecture today; its modules are re-exported here, so
//! generic code says `arch::apic`, `arch::instructions`, as Asterinas's OSTD says `arch::…`.

mod x86_64;

pub use self::x86_64::*;
