fn main() {
    std::process::exit(etcdroll::cli::main());
}
