//! `edge-cloud`: parses the command line, starts logging to stderr, runs the verb, prints the result, and maps an
//! error to its documented exit code (docs/cloud.md, "Exit codes").

use clap::Parser;

fn main() {
    let cli = edge_cloud::cli::Cli::parse();
    cliout::log_to_stderr("edge-cloud", cli.log_level, &["edge_cloud"]);
    // The environment is read here, once: the client's endpoint, token and CA when no flag names them.
    let env = edge_cloud::cli::client::Env {
        url: std::env::var("EDGE_CLOUD_URL").ok(),
        token: std::env::var("EDGE_CLOUD_TOKEN").ok(),
        ca_file: std::env::var_os("EDGE_CLOUD_CA").map(std::path::PathBuf::from),
    };
    cliout::finish("edge-cloud", edge_cloud::cli::run(cli, env), edge_cloud::Error::exit_code);
}
