//! The kmap book (chapters are filled in below).
