//! # 2. Quick start
//!
//! A context (a task, or one run of an interrupt handler) gets one [`Local`](crate::Local)
//! handle, from the kernel code that starts the context. Everything is mapped through it:
//!
//! ```
//! use kmap::Local;
//! use kmap_host::HostPlatform;
//!
//! // A host process playing the machine: 1 CPU, 64 frames of which 16 are direct-mapped, 1 task.
//! let machine: HostPlatform = HostPlatform::new(1, 64, 16, 1);
//! let (mut a, mut b) = (machine.page(40), machine.page(41));
//! // SAFETY: the only handle of this task, dropped before the task ends.
//! let mut local = unsafe { Local::new(&machine) };
//!
//! let mut first = local.map(&mut a);            // cell 0 of this CPU's slots
//! first.write(0, b"hello")?;
//! first.copy_to(&mut b);                        // maps `b` on top of `first`, copies, unmaps it
//!
//! let mut buf = [0; 5];
//! first.read(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! drop(first);                                  // unmapped: cell 0 is free again
//! assert_eq!(machine.task(0).depth(), 0);
//! assert_eq!(&machine.frame_bytes(41)[..5], b"hello");
//! # Ok::<(), kmap::OutOfBounds>(())
//! ```
//!
//! The closure form releases the mapping when the closure returns, and nests the same way:
//!
//! ```
//! # use kmap::Local;
//! # use kmap_host::HostPlatform;
//! # let machine: HostPlatform = HostPlatform::new(1, 64, 16, 1);
//! # let (mut src, mut dst) = (machine.page(40), machine.page(41));
//! # // SAFETY: the only handle of this task.
//! # let mut local = unsafe { Local::new(&machine) };
//! let sum: u32 = local.with_mapped(&mut src, |page| page.bytes().iter().map(|&b| b as u32).sum());
//! assert_eq!(sum, 0);
//! local.copy_page(&mut src, &mut dst);          // two nested mappings, released in order
//! ```
//!
//! A lowmem page (one with a direct-map address) is not put in a slot at all: the guard holds its
//! direct-map address and releasing it does nothing, exactly as in Linux.
//!
//! What does not compile: releasing a mapping while one made through it lives, two outermost
//! [`Mapping`](crate::Mapping)s of one context at once (mappings held side by side go in a
//! [`Scope`](crate::Scope), on a platform that releases in any order), using a byte view after
//! its mapping, a scoped mapping outliving its scope, sending a mapping or a `Local` to another
//! thread. `crates/kmap/tests/compile-fail/` has one file for each.
