//! What the QEMU end-to-end test boots in its Linux guest: displayd on the machine's real Bochs
//! functions with in-process clients ([`displayd_testkit::guest`]), until killed.

use displayd::linux::uevent::UeventSocket;

fn main() {
    displayd::platform::timeline::init(log::LevelFilter::Info);
    let result =
        UeventSocket::open().map_err(|error| format!("uevent socket: {error}")).and_then(|mut events| {
            let never = std::sync::atomic::AtomicBool::new(false);
            displayd_testkit::guest::run(
                std::path::Path::new("/sys"),
                &mut events,
                &never,
                &mut std::io::stdout(),
            )
            .map_err(|error| format!("guest: {error}"))
        });
    match result {
        Ok(failures) => eprintln!("guest: stopped after {failures} failures"),
        Err(error) => eprintln!("guest: {error}"),
    }
    std::process::exit(1);
}
