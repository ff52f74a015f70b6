// Nor can a reference to it.
use kmap::{Mapping, Platform};

fn share<P: Platform + Sync + 'static>(mapping: &'static Mapping<'static, P>) {
    std::thread::spawn(move || mapping.bytes().len());
}

fn main() {}
