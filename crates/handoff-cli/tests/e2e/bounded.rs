//! Waits with a bound: a child process that hangs, or never prints the line a test waits for,
//! fails its test within seconds instead of stalling the suite.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a CLI call may take before it is killed and its test fails.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server or gateway may take to print its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A child that did not finish (or print) in time; it was killed.
#[derive(Debug)]
pub struct Hung {
    pub what: String,
    pub after: Duration,
}

impl std::fmt::Display for Hung {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} did not finish within {:?}", self.what, self.after)
    }
}

/// Runs `command` to completion, capturing its output; kills it after `timeout`.
pub fn output(mut command: Command, timeout: Duration) -> Result<Output, Hung> {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} cannot start: {e}"));
    // Drain both pipes on their own threads, so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Hung {
                what,
                after: timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// The first line `child` prints on its piped stdout; kills it if none arrives within `timeout`.
/// The rest of stdout keeps being drained so the child never writes into a full pipe.
pub fn first_line(child: &mut Child, timeout: Duration) -> Result<String, Hung> {
    let stdout: ChildStdout = child.stdout.take().expect("stdout is piped");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        let _ = reader.read_line(&mut first);
        let _ = send.send(first);
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    match receive.recv_timeout(timeout) {
        Ok(line) => Ok(line),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(Hung {
                what: "the child's first line".to_owned(),
                after: timeout,
            })
        }
    }
}

/// Runs `check` on its own thread and fails if it does not finish within `bound`: a test of the
/// timeouts above must fail, not hang, when those timeouts are broken.
fn within(bound: Duration, check: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        check();
        let _ = done.send(());
    });
    match finished.recv_timeout(bound) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the check hung: not finished within {bound:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(()) => {}
            Err(panic) => std::panic::resume_unwind(panic),
        },
    }
}

#[test]
fn a_hung_child_fails_within_its_timeout_and_is_killed() {
    within(Duration::from_secs(30), || {
        let started = Instant::now();
        let mut sleeper = Command::new("sleep");
        sleeper.arg("3600");
        let hung = output(sleeper, Duration::from_millis(500)).expect_err("sleep 3600 never exits");
        assert!(hung.to_string().contains("did not finish within"), "{hung}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the bound held: {:?}",
            started.elapsed()
        );
        // A child that runs but never prints the line a test waits for is killed too.
        let mut silent = Command::new("sleep")
            .arg("3600")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        first_line(&mut silent, Duration::from_millis(500)).expect_err("sleep prints nothing");
        assert!(silent.try_wait().unwrap().is_some(), "the child was killed");
        assert!(started.elapsed() < Duration::from_secs(30));
        // And a child that does finish in time gives its output.
        let done = output(Command::new("true"), Duration::from_secs(30)).unwrap();
        assert!(done.status.success());
    });
}
