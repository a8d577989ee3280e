//! Remote pids on a node that is not distributed: they come from decoded
//! terms, act like pids of a node that cannot be reached (sends are dropped,
//! links and monitors get `noconnection`), and never reach a local process.

#![cfg(feature = "dist")]

use std::time::Duration;

use beamish::dist::{Atom, Term};
use beamish::{Down, Exit, Pid, Reason};

/// A pid of `other@127.0.0.1` with creation `16#ABCDEF01`, as NEW_PID_EXT.
fn foreign_pid(id: u32) -> Pid {
    let node = b"other@127.0.0.1";
    let mut bytes = vec![131, 88, 119, node.len() as u8];
    bytes.extend_from_slice(node);
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&0xABCD_EF01u32.to_be_bytes());
    match Term::decode(&bytes).unwrap() {
        Term::Pid(p) => p,
        other => panic!("not a pid: {other}"),
    }
}

#[test]
fn remote_pids_keep_their_identity() {
    let a = foreign_pid(83);
    assert!(a.is_remote());
    assert_eq!(a, foreign_pid(83));
    assert_ne!(a, foreign_pid(84));
    assert_eq!(a.node(), Atom::new("other@127.0.0.1").unwrap());
    assert_eq!(a.to_string(), "<'other@127.0.0.1'.83.0>");
    // Re-encoding gives the same bytes: node, id, serial, creation kept.
    let bytes = Term::Pid(a).encode();
    assert_eq!(Term::decode(&bytes).unwrap(), Term::Pid(a));
    assert_eq!(&bytes[bytes.len() - 4..], &0xABCD_EF01u32.to_be_bytes());
}

#[test]
fn unreachable_remote_pids_give_noconnection() {
    let rt = beamish::Runtime::new().unwrap();
    rt.block_on(async {
        let remote = foreign_pid(1);
        assert!(!remote.is_alive());
        assert!(beamish::process_info(remote).await.is_none());
        assert!(beamish::register("remote", remote).is_err());
        remote.send(Term::Atom(Atom::OK)); // dropped: nobody to reach

        let mref = beamish::monitor(remote);
        let down = beamish::receive::<Down>()
            .timeout(Duration::from_secs(10))
            .await
            .expect("a Down for the unreachable pid");
        assert_eq!((down.monitor, down.pid), (mref, remote));
        assert_eq!(down.reason, Reason::NoConnection);

        beamish::trap_exit(true);
        beamish::link(remote).unwrap();
        let exit = beamish::receive::<Exit>()
            .timeout(Duration::from_secs(10))
            .await
            .expect("an exit for the unreachable link");
        assert_eq!((exit.from, exit.reason), (remote, Reason::NoConnection));
    })
    .unwrap();
}

#[test]
fn an_untrapped_link_to_an_unreachable_pid_kills() {
    let rt = beamish::Runtime::new().unwrap();
    rt.block_on(async {
        let remote = foreign_pid(2);
        let (child, _) = beamish::spawn_monitor(async move {
            beamish::link(remote).unwrap();
            beamish::sleep(Duration::from_secs(30)).await;
        });
        let down = beamish::receive::<Down>()
            .timeout(Duration::from_secs(10))
            .await
            .expect("the linked child dies");
        assert_eq!((down.pid, down.reason), (child, Reason::NoConnection));
    })
    .unwrap();
}

/// `monitor(process, {Name, node()})` on a node that is not distributed:
/// the `NameDown` names the name and node and carries the holder's exit
/// reason; a name nobody holds gives `noproc` at once; `demonitor_name`
/// stops it; another node cannot be reached (`noconnection`).
#[test]
fn monitors_by_name_on_this_node() {
    use beamish::dist::{self, NameDown};
    let rt = beamish::Runtime::new().unwrap();
    rt.block_on(async {
        let here = dist::this_node();
        let holder = beamish::spawn(async {
            beamish::receive::<&'static str>().await;
            beamish::exit::<()>(Reason::other("done")).await;
        });
        beamish::register("held", holder).unwrap();
        let name = Atom::new("held").unwrap();
        let m = dist::monitor_name(name, here);
        let stopped = dist::monitor_name(name, here);
        dist::demonitor_name(stopped, here);
        holder.send("go");
        let d = beamish::receive_if(move |d: &NameDown| d.monitor == m)
            .timeout(Duration::from_secs(5))
            .await
            .expect("a NameDown");
        assert_eq!(
            (d.name, d.node, d.reason),
            (name, here, Reason::other("done"))
        );
        let late = beamish::receive_if(move |d: &NameDown| d.monitor == stopped)
            .timeout(Duration::from_millis(200))
            .await;
        assert_eq!(late, None, "a NameDown after demonitor_name");

        let nobody = Atom::new("nobody_has_this").unwrap();
        let m = dist::monitor_name(nobody, here);
        let d = beamish::receive_if(move |d: &NameDown| d.monitor == m)
            .timeout(Duration::ZERO)
            .await
            .expect("noproc at once");
        assert_eq!(d.reason, Reason::NoProc);

        let far = Atom::new("far@127.0.0.1").unwrap();
        let m = dist::monitor_name(name, far);
        let d = beamish::receive_if(move |d: &NameDown| d.monitor == m)
            .timeout(Duration::ZERO)
            .await
            .expect("noconnection at once");
        assert_eq!((d.node, d.reason), (far, Reason::NoConnection));
    })
    .unwrap();
}
