//! Starts one moto server per test binary on a free loopback port (`tests/moto_server.py`, moto
//! with DynamoDB requests serialised as DynamoDB makes them atomic), and builds AWS adapters and
//! resources (table with its index, queues with dead-letter queues) against it.
//!
//! A missing moto is a failure with a message saying how to install it, never a skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;

static ENDPOINT: OnceLock<String> = OnceLock::new();

/// The Python of the tools virtual environment, where moto is installed.
fn tools_python() -> PathBuf {
    if let Ok(path) = std::env::var("VORONKA_TOOLS_PYTHON") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin/python")
}

fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/moto_server.py")
}

/// The endpoint of this test binary's moto server, starting it on first use.
pub fn endpoint() -> String {
    ENDPOINT
        .get_or_init(|| {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            let binary = tools_python();
            let (sender, receiver) = std::sync::mpsc::channel();
            // The server is started from a thread that lives as long as the test binary, and asks the
            // kernel to stop it when that thread's process ends, so no server outlives the tests.
            std::thread::spawn(move || {
                let mut command = Command::new(&binary);
                command
                    .arg(launcher())
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                #[cfg(target_os = "linux")]
                unsafe {
                    use std::os::unix::process::CommandExt;
                    command.pre_exec(|| {
                        libc_prctl_pdeathsig();
                        Ok(())
                    });
                }
                match command.spawn() {
                    Ok(mut child) => {
                        sender.send(Ok(())).ok();
                        let _ = child.wait();
                    }
                    Err(e) => {
                        sender
                            .send(Err(format!(
                                "cannot start moto ({} tests/moto_server.py): {e}. Run ./tests/run.sh, which installs \
                                 moto into .tools/venv, or set VORONKA_TOOLS_PYTHON to a Python that has moto[server].",
                                binary.display()
                            )))
                            .ok();
                    }
                }
                loop {
                    std::thread::park();
                }
            });
            receiver.recv().expect("moto starter thread").unwrap_or_else(|message| panic!("{message}"));
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(60);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "moto did not start listening on {endpoint} within 60 s (is moto[server] installed for {}?)",
                    tools_python().display()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            endpoint
        })
        .clone()
}

#[cfg(target_os = "linux")]
fn libc_prctl_pdeathsig() {
    // PR_SET_PDEATHSIG = 1, SIGTERM = 15: declared here to avoid a libc dependency for one call.
    unsafe extern "C" {
        fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    }
    unsafe {
        prctl(1, 15, 0, 0, 0);
    }
}

/// SDK configuration pointed at moto with dummy credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let endpoint = endpoint();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

/// Creates the table exactly as `infra/template.yaml` declares it.
pub async fn create_table(config: &aws_config::SdkConfig, name: &str) {
    let client = aws_sdk_dynamodb::Client::new(config);
    let attribute = |n: &str| {
        AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |n: &str, t: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(t).build().unwrap();
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .attribute_definitions(attribute("gsi1pk"))
        .attribute_definitions(attribute("gsi1sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("gsi1")
                .key_schema(key("gsi1pk", KeyType::Hash))
                .key_schema(key("gsi1sk", KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create the table in moto");
}

/// Creates a queue with a dead-letter queue after `max_receives`; returns (url, dlq url).
pub async fn create_queue(config: &aws_config::SdkConfig, name: &str, max_receives: u32) -> (String, String) {
    let client = aws_sdk_sqs::Client::new(config);
    let dlq = client.create_queue().queue_name(format!("{name}-dlq")).send().await.expect("create a DLQ in moto");
    let dlq_url = dlq.queue_url().unwrap().to_string();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#);
    let queue = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .expect("create a queue in moto");
    (queue.queue_url().unwrap().to_string(), dlq_url)
}
