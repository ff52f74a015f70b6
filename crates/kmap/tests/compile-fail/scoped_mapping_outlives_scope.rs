// A scoped mapping borrows its scope: the scope cannot end while one lives.
use kmap::{Local, Page, Platform};

fn outlive<P: Platform>(local: &mut Local<'_, P>, page: &mut Page) {
    let scope = local.scope();
    let mapping = scope.map(page);
    drop(scope);
    let _ = mapping.bytes();
}

fn main() {}
