// Two outermost mappings of one context at once could be released in either order.
use kmap::{Local, Page, Platform};

fn siblings<P: Platform>(local: &mut Local<'_, P>, a: &mut Page, b: &mut Page) {
    let first = local.map(a);
    let second = local.map(b);
    drop(first);
    drop(second);
}

fn main() {}
