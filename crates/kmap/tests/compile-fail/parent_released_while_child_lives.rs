// Releasing a parent guard while its nested child lives would unmap out of order.
use kmap::{Local, Page, Platform};

fn nested<P: Platform>(local: &mut Local<'_, P>, a: &mut Page, b: &mut Page) {
    let mut parent = local.map(a);
    let child = parent.map(b);
    drop(parent);
    drop(child);
}

fn main() {}
