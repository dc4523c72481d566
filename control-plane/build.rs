//! The bundled catalog (`../dsops-data`) is compiled in with `include_dir!`; rebuild when it
//! changes.

fn main() {
    println!("cargo:rerun-if-changed=../dsops-data");
}
