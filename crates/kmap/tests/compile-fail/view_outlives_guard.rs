// A byte view borrows its guard: it cannot be used after the page is unmapped.
use kmap::{Local, Page, Platform};

fn view<P: Platform>(local: &mut Local<'_, P>, page: &mut Page) -> u8 {
    let mapping = local.map(page);
    let bytes = mapping.bytes();
    drop(mapping);
    bytes[0]
}

fn main() {}
