// A scoped mapping is one CPU's slot, as a Mapping is: it cannot move to another thread.
use kmap::{Platform, ScopedMapping};

fn send<P: Platform + Sync + 'static>(mapping: ScopedMapping<'static, P>) {
    std::thread::spawn(move || drop(mapping));
}

fn main() {}
