// A mapped page is borrowed by its guard: no second mapping of it, no other use.
use kmap::{Local, Page, Platform};

fn twice<P: Platform>(local: &mut Local<'_, P>, page: &mut Page) {
    let mut mapping = local.map(page);
    let again = mapping.map(page);
    drop(again);
    drop(mapping);
}

fn main() {}
