use tinynet as _;
fn main() -> std::process::ExitCode {
    nnunet_cli::main()
}
