//! Applications: a named tree started, stopped in order, and waited for.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use beamish::otp::{Application, ChildSpec, Strategy, SupervisorError, SupervisorFlags};
use beamish::{Error, Reason, Runtime};

fn on_runtime<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    let rt = Runtime::new().unwrap();
    rt.block_on(f).unwrap()
}

/// A child that logs its start and, through a destructor, its end.
fn logged(id: &'static str, log: &Arc<Mutex<Vec<String>>>) -> ChildSpec {
    let log = log.clone();
    ChildSpec::worker(id, move || {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(format!("start {id}"));
            struct OnDrop(&'static str, Arc<Mutex<Vec<String>>>);
            impl Drop for OnDrop {
                fn drop(&mut self) {
                    self.1.lock().unwrap().push(format!("stop {}", self.0));
                }
            }
            let guard = OnDrop(id, log.clone());
            Ok(beamish::spawn_link(async move {
                let _guard = guard;
                beamish::receive::<()>().await
            }))
        }
    })
}

#[test]
fn start_runs_the_tree_in_order_and_stop_ends_it_in_reverse_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    on_runtime(async move {
        let app = Application::start(
            "ordered",
            SupervisorFlags::new(Strategy::OneForOne),
            vec![logged("a", &l), logged("b", &l), logged("c", &l)],
        )
        .await
        .unwrap();
        assert_eq!(app.name(), "ordered");
        assert_eq!(app.supervisor().which_children().await.unwrap().len(), 3);
        app.stop().await.unwrap();
        assert_eq!(
            *l.lock().unwrap(),
            [
                "start a", "start b", "start c", "stop c", "stop b", "stop a"
            ]
        );
        assert!(Application::whereis("ordered").await.is_none());
        assert!(matches!(app.stop().await, Err(Error::NoProc(_))));
    });
    drop(log);
}

#[test]
fn the_name_is_unique_while_running() {
    on_runtime(async {
        let flags = SupervisorFlags::new(Strategy::OneForOne);
        let app = Application::start("unique", flags, vec![]).await.unwrap();
        let again = Application::start("unique", flags, vec![]).await;
        assert!(
            matches!(again, Err(SupervisorError::Runtime(Error::NameTaken(_)))),
            "{again:?}"
        );
        app.stop().await.unwrap();
        // Free again after the stop.
        let app = Application::start("unique", flags, vec![]).await.unwrap();
        app.stop().await.unwrap();
    });
}

#[test]
fn a_child_that_fails_to_start_fails_the_application_naming_it() {
    on_runtime(async {
        let bad = ChildSpec::worker("db", || async {
            Err(Error::Exited(Reason::other("no db")))
        });
        let r = Application::start(
            "broken",
            SupervisorFlags::new(Strategy::OneForOne),
            vec![bad],
        )
        .await;
        let e = r.expect_err("the start must fail");
        assert!(e.to_string().contains("db"), "{e}");
        assert!(Application::whereis("broken").await.is_none());
    });
}

#[test]
fn wait_returns_when_the_root_supervisor_gives_up() {
    on_runtime(async {
        // A child that crashes at once, with no restarts allowed.
        let crasher = ChildSpec::worker("crasher", || async {
            Ok(beamish::spawn_link(async {
                beamish::receive::<()>().await;
            }))
        });
        let app = Application::start(
            "fragile",
            SupervisorFlags::new(Strategy::OneForOne).intensity(0),
            vec![crasher],
        )
        .await
        .unwrap();
        let child = app.supervisor().which_children().await.unwrap()[0]
            .pid
            .unwrap();
        let waiter = {
            let app = app.clone();
            let me = beamish::self_pid();
            beamish::spawn(async move { me.send(app.wait().await) })
        };
        let _ = waiter;
        beamish::sleep(Duration::from_millis(10)).await;
        child.exit(Reason::other("boom"));
        let reason = beamish::receive::<Reason>()
            .timeout(Duration::from_secs(10))
            .await;
        assert_eq!(reason, Some(Reason::Shutdown));
        assert!(Application::whereis("fragile").await.is_none());
    });
}

#[test]
fn the_application_outlives_the_process_that_started_it() {
    on_runtime(async {
        let me = beamish::self_pid();
        let starter = beamish::spawn(async move {
            let app =
                Application::start("lasting", SupervisorFlags::new(Strategy::OneForOne), vec![])
                    .await
                    .unwrap();
            me.send(app.supervisor().pid());
            beamish::exit::<()>(Reason::other("starter gone")).await
        });
        let _ = starter;
        let sup: beamish::Pid = beamish::receive().await;
        beamish::sleep(Duration::from_millis(20)).await;
        assert!(sup.is_alive());
        let app = Application::whereis("lasting").await.unwrap();
        app.stop().await.unwrap();
        assert!(!sup.is_alive());
    });
}
