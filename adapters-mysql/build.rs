//! Rebuilds the crate when a migration is added: `sqlx::migrate!` embeds the files it finds
//! at compile time, and on stable Rust cargo only notices edits to files it already embedded,
//! so a new `migrations/*.sql` would otherwise be missing from the binary until some source
//! file changed.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
