// A context's handle stays in its context.
use kmap::{Local, Platform};

fn send<P: Platform + Sync + 'static>(local: Local<'static, P>) {
    std::thread::spawn(move || drop(local));
}

fn main() {}
