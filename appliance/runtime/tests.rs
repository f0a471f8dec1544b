use super::*;

fn thread(
    name: &'static str,
    what: &'static str,
    f: impl FnOnce() -> Result<(), String> + Send + 'static,
) -> MgmtThread {
    let h = std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap();
    while !h.is_finished() {
        std::thread::sleep(Duration::from_millis(1));
    }
    MgmtThread {
        name,
        what,
        handle: Some(h),
    }
}

fn running() -> (MgmtThread, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    });
    let m = MgmtThread {
        name: "mgmt-selection",
        what: "uplink selection",
        handle: Some(h),
    };
    (m, stop)
}

#[test]
fn a_management_thread_that_panics_stops_the_run_naming_it_and_the_cause() {
    let (ok, stop) = running();
    let mut mgmt = vec![
        ok,
        thread("mgmt-redirect", "redirection", || {
            panic!("store map corrupted")
        }),
    ];
    let e = check_mgmt(&mut mgmt).unwrap_err().to_string();
    assert!(e.contains("redirection thread (mgmt-redirect)"), "{e}");
    assert!(e.contains("panicked: store map corrupted"), "{e}");
    stop.store(true, Ordering::Relaxed);
    assert_eq!(mgmt[0].join(), None);
}

#[test]
fn a_management_thread_that_returns_an_error_or_ends_early_stops_the_run() {
    let mut mgmt = vec![thread("mgmt-redirect", "redirection", || {
        Err("the shared store's thread (mgmt-store) died".into())
    })];
    let e = check_mgmt(&mut mgmt).unwrap_err().to_string();
    assert!(e.contains("mgmt-store) died"), "{e}");
    let mut mgmt = vec![thread("mgmt-selection", "uplink selection", || Ok(()))];
    let e = check_mgmt(&mut mgmt).unwrap_err().to_string();
    assert!(
        e.contains("uplink selection thread (mgmt-selection) stopped: it returned before the stop"),
        "{e}"
    );
}

#[test]
fn running_management_threads_are_healthy() {
    let (m, stop) = running();
    let mut mgmt = vec![m];
    assert!(check_mgmt(&mut mgmt).is_ok());
    stop.store(true, Ordering::Relaxed);
    assert_eq!(mgmt[0].join(), None);
}
