//! `fleetdns`: one DNS namespace for a fleet of Kubernetes clusters. The program is the
//! library (`src/lib.rs`).

use std::process::ExitCode;

fn main() -> ExitCode {
    fleetdns::main()
}
