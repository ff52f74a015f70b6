// A mapping is one CPU's slot: it cannot move to another thread.
use kmap::{Mapping, Platform};

fn send<P: Platform + Sync + 'static>(mapping: Mapping<'static, P>) {
    std::thread::spawn(move || drop(mapping));
}

fn main() {}
