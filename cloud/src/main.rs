//! `edge-cloud`: parses the command line and runs the library's verb (the verbs follow this commit).
fn main() {
    eprintln!("edge-cloud: no verbs yet");
    std::process::exit(2);
}
