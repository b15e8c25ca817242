//! The emulator speaks the Runtime API well enough for a real `lambda_runtime` client: the
//! hello-world Lambda gets its event, answers it, and asks for the next one. Not timed.

use std::process::{Command, Stdio};
use std::time::Duration;

use voronka_bench::{Emulator, Mark};

#[test]
fn hello_world_gets_its_event_and_answers_it() {
    let mut emulator = Emulator::start().unwrap();
    let marks = emulator.arm(br#"{"hello":"world"}"#.to_vec());
    let mut child = Command::new(env!("CARGO_BIN_EXE_hello-lambda"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", emulator.runtime_api())
        .env("AWS_LAMBDA_FUNCTION_NAME", "hello")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    emulator.started(child.id());
    let next = || marks.recv_timeout(Duration::from_secs(60)).expect("the function spoke to the emulator");
    let outcome = (next(), next(), next());
    child.kill().ok();
    child.wait().ok();
    match outcome {
        (Mark::FirstNext { .. }, Mark::Response { body, .. }, Mark::IdleNext { .. }) => {
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
                serde_json::json!({"hello": "world"})
            );
        }
        other => panic!("unexpected exchange: {other:?}"),
    }
}
