//! Link the `lookout` binary with packed relative relocations (`DT_RELR`) on GNU/Linux.
//!
//! A position-independent executable carries one 24-byte record per pointer to patch at
//! load time; the loader reads them all at startup, and those pages stay resident for the
//! life of the process (about 1 MiB of `.rela.dyn` here). Packed, they take a few KiB.
//! GNU ld 2.38+ and lld 15+ understand the option (older GNU ld warns and ignores it);
//! glibc 2.36+ loads such binaries.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
