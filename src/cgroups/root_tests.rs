//! Root tests (filled below).
