//! `gpuctl`: see the library for the commands; this only runs them and exits with their code.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let code = gpuctl::run(args, &mut out, &mut err).await;
    drop(out);
    drop(err);
    std::process::exit(code);
}
