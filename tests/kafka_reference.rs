//! Apache Kafka as the reference (issue #14): the harness's real Kafka
//! cluster (tests/common/kafka.rs, the release pinned in
//! tests/kafka/pom.xml) proven with Kafka's own tools, then the same tools
//! against Portcullis, embedded and as a gateway in front of the cluster.
//!
//! - `three_node_sasl_ssl_cluster_round_trip`: the harness itself (3 KRaft
//!   nodes, SASL_SSL + SCRAM-SHA-512 and mTLS listeners, Kafka's
//!   authorizer, RF 3), with Kafka's own tools only.
//! - `kafka_{data,admin}_tools_{against_portcullis,through_gateway}`: 30
//!   invocations of Kafka's tools over SASL_SSL against embedded Portcullis
//!   and against Portcullis as a gateway in front of a 1-node Kafka (the
//!   matrix of issue #14 item 4); each prints a table and records it in the
//!   README's compatibility table (tests/common/compat.rs). Every step
//!   works or meets its deliberate refusal (what the tool prints for it is
//!   asserted, and a refusal that starts working fails the test).
//! - `gateway_in_front_of_three_node_cluster`: Portcullis in gateway mode
//!   in front of the 3-node cluster over SASL_SSL with a service user;
//!   Kafka's tools through the gateway, Kafka's side checked directly.
//!
//! Tools run as separate JVMs (~1.5-3 s each); independent ones run two at
//! a time ([`run_chains`]).

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/compat.rs"]
mod compat;

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backends::Backend;
use common::kafka::{
    run_tool, run_tool_timeout, tools, write_client_properties, ClientAuth, KafkaCluster,
    KafkaOpts, Listener, ToolRun, ADMIN,
};
use common::Broker;
use compat::{Cell, Column};

const ALICE: (&str, &str) = ("alice", "alice-Kafka-Secret-1");
const BOB: (&str, &str) = ("bob", "bob-Kafka-Secret-2");

/// `k<i>:v<i>` lines, the console producer's input with `parse.key`.
fn records(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}k{i}:v{i}")).collect()
}

/// `kafka-console-consumer` arguments reading `n` records of `topic` from
/// the start, keys printed as `key:value`.
fn consume_args(
    bootstrap: &str,
    config: &str,
    topic: &str,
    group: Option<&str>,
    n: usize,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "--bootstrap-server",
        bootstrap,
        "--command-config",
        config,
        "--topic",
        topic,
        "--from-beginning",
        "--max-messages",
        &n.to_string(),
        "--timeout-ms",
        "60000",
        "--formatter-property",
        "print.key=true",
        "--formatter-property",
        "key.separator=:",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(g) = group {
        a.extend(["--group".to_string(), g.to_string()]);
    }
    a
}

/// `kafka-console-producer` arguments writing `key:value` lines to `topic`
/// with acks=all (the Java producer is idempotent by default).
fn produce_args(bootstrap: &str, config: &str, topic: &str) -> Vec<String> {
    [
        "--bootstrap-server",
        bootstrap,
        "--command-config",
        config,
        "--topic",
        topic,
        "--reader-property",
        "parse.key=true",
        "--reader-property",
        "key.separator=:",
        "--command-property",
        "acks=all",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every record of `sent` exactly once in a console consumer's output.
fn read_back(sent: &[String]) -> impl Fn(&str) -> Result<(), String> + Send + 'static {
    let want: BTreeSet<String> = sent.iter().cloned().collect();
    move |out| {
        let lines: Vec<&str> = out.lines().collect();
        let got: BTreeSet<String> = lines.iter().map(|l| l.to_string()).collect();
        if got == want && lines.len() == want.len() {
            Ok(())
        } else {
            let missing = want.difference(&got).count();
            Err(format!(
                "read {} lines ({} distinct), {missing} of the {} records missing",
                lines.len(),
                got.len(),
                want.len()
            ))
        }
    }
}

/// Asserts that every partition line of `kafka-topics --describe` output
/// has `replicas` replicas all in sync, and returns how many there are.
fn assert_in_sync(described: &str, replicas: usize) -> usize {
    let partitions: Vec<&str> = described
        .lines()
        .filter(|l| l.trim_start().starts_with("Topic:") && l.contains("\tPartition:"))
        .collect();
    for p in &partitions {
        let field = |name: &str| {
            p.split(&format!("{name}: "))
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.is_empty())
                .count()
        };
        assert_eq!(field("Replicas"), replicas, "{p}");
        assert_eq!(field("Isr"), replicas, "every replica in sync: {p}");
    }
    partitions.len()
}

/// A 3-node KRaft cluster with a SASL_SSL (SCRAM-SHA-512) and an mTLS
/// client listener and Kafka's StandardAuthorizer: a replication-factor-3
/// topic made by `kafka-topics`; a user created at format time (alice) and
/// one created after start with `kafka-configs` (bob) given producer and
/// consumer ACLs with `kafka-acls`; records written by
/// `kafka-console-producer` as alice and read back by
/// `kafka-console-consumer` in a group as bob, and again over mTLS with
/// the `admin` client certificate (CN=admin is the super user
/// `User:admin`); alice may not read, and a wrong password is refused.
#[test]
fn three_node_sasl_ssl_cluster_round_trip() {
    let kafka = KafkaCluster::start(
        "sasl3",
        KafkaOpts {
            nodes: 3,
            listeners: &[Listener::SaslSsl, Listener::Mtls],
            users: &[ALICE],
            authorizer: true,
            ..Default::default()
        },
    );
    let bootstrap = kafka.bootstrap(Listener::SaslSsl);
    let admin = kafka.admin_properties(Listener::SaslSsl);
    let admin = admin.to_str().unwrap();
    let alice = kafka.client_properties(Listener::SaslSsl, ALICE.0, ALICE.1);
    let alice = alice.to_str().unwrap();
    let bob = kafka.client_properties(Listener::SaslSsl, BOB.0, BOB.1);
    let bob = bob.to_str().unwrap();
    let with = |extra: &[&str]| -> Vec<String> {
        ["--bootstrap-server", &bootstrap, "--command-config", admin]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let check = |outcomes: Vec<Outcome>, planned: usize| -> Vec<Outcome> {
        for o in &outcomes {
            eprintln!(
                "  {:<48} {:>5.1}s  {:?}",
                o.name,
                o.run.elapsed.as_secs_f64(),
                o.verdict
            );
            if let Err(e) = &o.verdict {
                panic!("{}: {e}\n{}\n{}", o.name, o.run, kafka.logs_tail(30));
            }
        }
        assert_eq!(outcomes.len(), planned, "a chain stopped early");
        outcomes
    };

    let bob_scram = format!("SCRAM-SHA-512=[password={}]", BOB.1);
    check(
        run_chains(
            vec![
                vec![step(
                    "kafka-topics --create (RF 3)",
                    tools::TOPICS,
                    &with(&[
                        "--create",
                        "--topic",
                        "reference",
                        "--partitions",
                        "3",
                        "--replication-factor",
                        "3",
                    ]),
                )
                .shows(&["Created topic reference."])],
                vec![
                    step(
                        "kafka-configs --alter users (SCRAM)",
                        tools::CONFIGS,
                        &with(&[
                            "--alter",
                            "--entity-type",
                            "users",
                            "--entity-name",
                            BOB.0,
                            "--add-config",
                            &bob_scram,
                        ]),
                    )
                    .shows(&["Completed updating config for user bob."]),
                    step(
                        "kafka-acls --add --consumer",
                        tools::ACLS,
                        &with(&[
                            "--add",
                            "--allow-principal",
                            "User:bob",
                            "--consumer",
                            "--topic",
                            "reference",
                            "--group",
                            "reference-readers",
                        ]),
                    ),
                ],
                vec![step(
                    "kafka-acls --add --producer",
                    tools::ACLS,
                    &with(&[
                        "--add",
                        "--allow-principal",
                        "User:alice",
                        "--producer",
                        "--topic",
                        "reference",
                    ]),
                )],
            ],
            Some(Column::Kafka),
        ),
        4,
    );

    let sent = records("", 200);
    let produce = produce_args(&bootstrap, alice, "reference");
    let produce: Vec<&str> = produce.iter().map(String::as_str).collect();
    kafka.tool_ok(tools::CONSOLE_PRODUCER, &produce, &(sent.join("\n") + "\n"));

    // In parallel: describe, read back over SASL_SSL in a group, read back
    // over mTLS, and two refusals.
    let mtls = kafka.client_properties(Listener::Mtls, ADMIN, "");
    let wrong = kafka.client_properties(Listener::SaslSsl, ADMIN, "not-the-password");
    let outcomes = check(
        run_chains(
            vec![
                vec![step(
                    "kafka-console-consumer --group (SASL_SSL, bob)",
                    tools::CONSOLE_CONSUMER,
                    &consume_args(&bootstrap, bob, "reference", Some("reference-readers"), 200),
                )
                .check(read_back(&sent))],
                vec![step(
                    "kafka-topics --describe",
                    tools::TOPICS,
                    &with(&["--describe", "--topic", "reference"]),
                )
                .shows(&["PartitionCount: 3", "ReplicationFactor: 3"])],
                vec![step(
                    "kafka-console-consumer (mTLS, CN=admin)",
                    tools::CONSOLE_CONSUMER,
                    &consume_args(
                        &kafka.bootstrap(Listener::Mtls),
                        mtls.to_str().unwrap(),
                        "reference",
                        None,
                        200,
                    ),
                )
                .check(read_back(&sent))],
                vec![step(
                    "kafka-console-consumer (alice: no Read ACL)",
                    tools::CONSOLE_CONSUMER,
                    &consume_args(&bootstrap, alice, "reference", Some("alice-g"), 1),
                )
                // The console consumer reports the refusal and exits 0.
                .check(|out| match out.trim() {
                    "" => Err("nothing read".into()),
                    _ => Ok(()),
                })
                .refused_on(
                    &[Column::Kafka],
                    "GroupAuthorizationException",
                    "no Read ACL on the group",
                )],
                vec![step(
                    "kafka-topics --list (wrong password)",
                    tools::TOPICS,
                    &[
                        "--bootstrap-server",
                        &bootstrap,
                        "--command-config",
                        wrong.to_str().unwrap(),
                        "--list",
                    ],
                )
                .refused_on(
                    &[Column::Kafka],
                    "Authentication failed",
                    "a wrong password",
                )],
            ],
            Some(Column::Kafka),
        ),
        5,
    );
    for o in &outcomes {
        let all = format!("{}{}", o.run.stdout, o.run.stderr);
        if o.name.contains("no Read ACL") {
            // The console consumer reports the refusal and exits 0.
            assert!(
                all.contains("GroupAuthorizationException")
                    && all.contains("Processed a total of 0 messages"),
                "alice read without an ACL: {}",
                o.run
            );
        } else if o.name.contains("wrong password") {
            assert!(!o.run.ok(), "a wrong password was accepted: {}", o.run);
            assert!(all.contains("Authentication failed"), "{}", o.run);
        } else if o.name == "kafka-topics --describe" {
            assert_eq!(assert_in_sync(&o.run.stdout, 3), 3, "{}", o.run.stdout);
        }
    }
}

// ---------------------------------------------------------------------------
// Kafka's tools against Portcullis
// ---------------------------------------------------------------------------

type Check = Box<dyn Fn(&str) -> Result<(), String> + Send>;

/// One invocation of a Kafka tool.
struct Step {
    /// The script of a Kafka distribution that runs it, and what it does.
    name: &'static str,
    main: &'static str,
    args: Vec<String>,
    stdin: String,
    /// What stdout must show for the step to count as working.
    check: Check,
    /// A deliberate refusal: the back ends that refuse, what the tool
    /// prints for it (asserted) and why (the README's table), or `None`:
    /// the step must work.
    refused: Option<Refusal>,
}

#[derive(Clone, Copy)]
struct Refusal {
    on: &'static [Column],
    /// What the tool's output (stdout or stderr) shows for the refusal.
    shows: &'static str,
    why: &'static str,
}

fn step<S: AsRef<str>>(name: &'static str, main: &'static str, args: &[S]) -> Step {
    Step {
        name,
        main,
        args: args.iter().map(|s| s.as_ref().to_string()).collect(),
        stdin: String::new(),
        check: Box::new(|_| Ok(())),
        refused: None,
    }
}

impl Step {
    /// stdout must contain every one of `needles`.
    fn shows(mut self, needles: &[&str]) -> Step {
        let needles: Vec<String> = needles.iter().map(|s| s.to_string()).collect();
        self.check = Box::new(
            move |out| match needles.iter().find(|n| !out.contains(*n)) {
                Some(n) => Err(format!("stdout lacks {n:?}")),
                None => Ok(()),
            },
        );
        self
    }

    fn check(mut self, f: impl Fn(&str) -> Result<(), String> + Send + 'static) -> Step {
        self.check = Box::new(f);
        self
    }

    fn stdin(mut self, text: String) -> Step {
        self.stdin = text;
        self
    }

    /// Deliberately refused on the back ends `on`, the tool printing
    /// `shows`; it must work everywhere else.
    fn refused_on(mut self, on: &'static [Column], shows: &'static str, why: &'static str) -> Step {
        self.refused = Some(Refusal { on, shows, why });
        self
    }
}

/// What one step did: the run and the verdict of its check.
struct Outcome {
    name: &'static str,
    /// The refusal the step was expected to meet on this back end.
    refused: Option<Refusal>,
    run: ToolRun,
    verdict: Result<(), String>,
}

/// Runs `chains` (each a sequence of steps that depend on each other) on
/// two workers (a tool's JVM start is CPU-bound, the machine has 2 cores
/// and cargo runs two tests at a time); a chain stops at its first failing
/// step unless that step is a known gap.
fn run_chains(chains: Vec<Vec<Step>>, column: Option<Column>) -> Vec<Outcome> {
    let queue = Mutex::new(VecDeque::from(chains));
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let Some(chain) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                for s in chain {
                    let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
                    let run = run_tool_timeout(s.main, &args, &s.stdin, STEP_TIMEOUT);
                    let worked = if run.ok() {
                        (s.check)(&run.stdout)
                    } else {
                        Err(run.error_line())
                    };
                    let refused = s
                        .refused
                        .filter(|r| column.is_some_and(|c| r.on.contains(&c)));
                    let verdict = match refused {
                        None => worked,
                        Some(r) if worked.is_ok() => Err(format!(
                            "works now, but is listed as a deliberate refusal ({}): \
                             remove it and the README's line",
                            r.why
                        )),
                        Some(r) if format!("{}{}", run.stdout, run.stderr).contains(r.shows) => {
                            Ok(())
                        }
                        Some(r) => Err(format!(
                            "want the refusal {:?}, got: {}",
                            r.shows,
                            run.error_line()
                        )),
                    };
                    let stop = verdict.is_err();
                    outcomes.lock().unwrap().push(Outcome {
                        name: s.name,
                        refused,
                        run,
                        verdict,
                    });
                    if stop {
                        break;
                    }
                }
            });
        }
    });
    outcomes.into_inner().unwrap()
}

const BOTH: &[Column] = &[Column::Embedded, Column::Gateway];

const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// A Portcullis back end (SASL_SSL with SCRAM-SHA-512: embedded, or a
/// gateway in front of a 1-node Kafka) and what Kafka's tools need to reach
/// it as the bootstrap super user `admin`: a client properties file with a
/// PEM truststore made of its `certs/ca.crt`.
struct Target {
    backend: Backend,
    bootstrap: String,
    /// The admin's client properties file.
    admin: String,
    dir: tempfile::TempDir,
}

impl Target {
    fn start(name: &str, column: Column) -> Target {
        let dir = common::scratch(name);
        let at = dir.path().join("broker");
        let backend = match column {
            // No initial rebalance delay, as in the Kafka clusters here: a
            // console consumer's group forms at once.
            Column::Embedded => {
                Backend::embedded(&at, "groups:\n  initial_rebalance_delay_ms: 0\n")
            }
            // One broker keeps the tools' matrix lean; the Java client
            // and tests/gateway_kafka.rs use three.
            Column::Gateway => Backend::gateway(name, &at, 1),
            Column::Kafka => unreachable!("Kafka's tools against Kafka: the cluster tests above"),
        };
        let pw = backend
            .broker
            .admin_password
            .clone()
            .expect("admin password");
        let ca = backend.broker.ca_file();
        let admin = dir.path().join("admin.properties");
        let auth = ClientAuth::Scram {
            user: ADMIN,
            password: &pw,
            ca: &ca,
        };
        write_client_properties(&admin, &auth, &[]);
        // The jars and the JVM archive (made once per machine) are not the
        // tools' time.
        common::kafka::cds_flags();
        Target {
            bootstrap: backend.broker.addr("SASL_SSL").to_string(),
            admin: admin.to_str().unwrap().to_string(),
            backend,
            dir,
        }
    }

    /// `--bootstrap-server B --command-config admin.properties EXTRA`.
    fn with(&self, extra: &[&str]) -> Vec<String> {
        [
            "--bootstrap-server",
            &self.bootstrap,
            "--command-config",
            &self.admin,
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    }

    fn create_topic(&self, topic: &str) -> Step {
        step(
            "kafka-topics --create",
            tools::TOPICS,
            &self.with(&[
                "--create",
                "--topic",
                topic,
                "--partitions",
                "3",
                "--replication-factor",
                "1",
            ]),
        )
        .shows(&["Created topic"])
    }

    /// Runs `phases` one after the other (the chains of each in parallel),
    /// prints the table of what ran, asserts that every step worked or met
    /// its deliberate refusal, and records the run in the README's table.
    fn run(&self, title: &str, phases: Vec<Vec<Vec<Step>>>) {
        let started = Instant::now();
        let column = self.backend.column;
        let planned: usize = phases.iter().flatten().map(Vec::len).sum();
        let mut outcomes = Vec::new();
        for chains in phases {
            outcomes.extend(run_chains(chains, Some(column)));
        }
        let mut table = format!(
            "Kafka {} {title} against Portcullis ({column:?}; SASL_SSL, SCRAM-SHA-512), {} runs in {:.1?}:\n",
            common::kafka::version(),
            outcomes.len(),
            started.elapsed()
        );
        for o in &outcomes {
            let status = match (&o.verdict, o.refused) {
                (Ok(()), None) => "ok".to_string(),
                (Ok(()), Some(r)) => format!("refused as intended: {}", r.shows),
                (Err(e), _) => format!("FAILED: {e}"),
            };
            table.push_str(&format!(
                "  {:<48} {:>5.1}s  {status}\n",
                o.name,
                o.run.elapsed.as_secs_f64()
            ));
        }
        eprintln!("{table}");
        let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.verdict.is_err()).collect();
        if !failed.is_empty() {
            for o in &failed {
                eprintln!("{}", o.run);
            }
            eprintln!("{}", self.backend.logs_tail(40));
            panic!(
                "Kafka tools failed against Portcullis ({column:?}): {:?}",
                failed.iter().map(|o| o.name).collect::<Vec<_>>()
            );
        }
        assert_eq!(outcomes.len(), planned, "a chain stopped early");
        let cells: Vec<(String, Cell)> = outcomes
            .iter()
            .map(|o| {
                let cell = match o.refused {
                    None => Cell::Works,
                    Some(r) => Cell::Refused(format!("`{}`", r.shows)),
                };
                (format!("`{}`", o.name), cell)
            })
            .collect();
        compat::record(
            &format!("Kafka tools {} ({title})", common::kafka::version()),
            column,
            &cells,
            true,
        );
    }
}

#[test]
fn kafka_data_tools_against_portcullis() {
    data_tools(&Target::start("kafka-data-tools", Column::Embedded));
}

#[test]
fn kafka_data_tools_through_gateway() {
    data_tools(&Target::start("kafka-data-tools-gw", Column::Gateway));
}

/// Kafka's data-path tools: topics, the console producer and a consumer
/// group, the group and offset tools, the perf tests, partitions added,
/// the topic deleted. All asserted, output included.
fn data_tools(t: &Target) {
    let sent = records("", 100);
    let offsets = t.dir.path().join("delete-records.json");
    std::fs::write(
        &offsets,
        r#"{"version":1,"partitions":[{"topic":"tools","partition":0,"offset":1}]}"#,
    )
    .unwrap();
    let records_in_and_out = vec![
        step(
            "kafka-console-producer",
            tools::CONSOLE_PRODUCER,
            &produce_args(&t.bootstrap, &t.admin, "tools"),
        )
        .stdin(sent.join("\n") + "\n"),
        step(
            "kafka-console-consumer --group",
            tools::CONSOLE_CONSUMER,
            &consume_args(&t.bootstrap, &t.admin, "tools", Some("tools-g"), 100),
        )
        .check(read_back(&sent)),
        step(
            "kafka-consumer-groups --list",
            tools::CONSUMER_GROUPS,
            &t.with(&["--list"]),
        )
        .shows(&["tools-g"]),
        step(
            "kafka-consumer-groups --describe",
            tools::CONSUMER_GROUPS,
            &t.with(&["--describe", "--group", "tools-g"]),
        )
        .check(|out| {
            // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
            let rows: Vec<Vec<&str>> = out
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .filter(|f| f.first() == Some(&"tools-g"))
                .collect();
            let committed: i64 = rows
                .iter()
                .filter_map(|f| f.get(3)?.parse::<i64>().ok())
                .sum();
            let lag: i64 = rows
                .iter()
                .filter_map(|f| f.get(5)?.parse::<i64>().ok())
                .sum();
            if rows.len() == 3 && committed == 100 && lag == 0 {
                Ok(())
            } else {
                Err(format!("want 3 partitions, 100 committed, lag 0: {rows:?}"))
            }
        }),
        step(
            "kafka-consumer-groups --reset-offsets --execute",
            tools::CONSUMER_GROUPS,
            &t.with(&[
                "--reset-offsets",
                "--group",
                "tools-g",
                "--topic",
                "tools",
                "--to-earliest",
                "--execute",
            ]),
        )
        .shows(&["tools-g"]),
        step(
            "kafka-get-offsets",
            tools::GET_OFFSETS,
            &t.with(&["--topic", "tools"]),
        )
        .check(|out| {
            let total: i64 = out
                .lines()
                .filter_map(|l| l.rsplit(':').next()?.parse::<i64>().ok())
                .sum();
            if total == 100 {
                Ok(())
            } else {
                Err(format!("end offsets add up to {total}, not 100"))
            }
        }),
        step(
            "kafka-delete-records",
            tools::DELETE_RECORDS,
            &t.with(&["--offset-json-file", offsets.to_str().unwrap()]),
        )
        .shows(&["partition: tools-0\tlow_watermark: 1"]),
    ];
    let perf = vec![
        step(
            "kafka-producer-perf-test",
            tools::PRODUCER_PERF,
            &t.with(&[
                "--topic",
                "perf",
                "--num-records",
                "1000",
                "--record-size",
                "100",
                "--throughput",
                "-1",
                "--command-property",
                "acks=all",
            ]),
        )
        .shows(&["1000 records sent"]),
        step(
            "kafka-consumer-perf-test",
            tools::CONSUMER_PERF,
            &t.with(&[
                "--topic",
                "perf",
                "--num-records",
                "1000",
                "--timeout",
                "30000",
            ]),
        )
        .shows(&["data.consumed.in.nMsg"]),
    ];
    let topics = vec![
        step("kafka-topics --list", tools::TOPICS, &t.with(&["--list"])).shows(&["tools"]),
        step(
            "kafka-topics --describe",
            tools::TOPICS,
            &t.with(&["--describe", "--topic", "tools"]),
        )
        .shows(&["PartitionCount: 3", "Partition: 2"]),
    ];
    let alter_and_delete = vec![
        step(
            "kafka-topics --alter --partitions",
            tools::TOPICS,
            &t.with(&["--alter", "--topic", "tools", "--partitions", "4"]),
        ),
        step(
            "kafka-topics --describe (after --alter)",
            tools::TOPICS,
            &t.with(&["--describe", "--topic", "tools"]),
        )
        .shows(&["PartitionCount: 4"]),
        step(
            "kafka-topics --delete",
            tools::TOPICS,
            &t.with(&["--delete", "--topic", "tools"]),
        ),
    ];
    t.run(
        "data tools",
        vec![
            vec![vec![t.create_topic("tools"), t.create_topic("perf")]],
            vec![records_in_and_out, perf, topics],
            vec![alter_and_delete],
        ],
    );
}

#[test]
fn kafka_admin_tools_against_portcullis() {
    admin_tools(&Target::start("kafka-admin-tools", Column::Embedded));
}

#[test]
fn kafka_admin_tools_through_gateway() {
    admin_tools(&Target::start("kafka-admin-tools-gw", Column::Gateway));
}

/// Kafka's admin tools: configs (topics, brokers, SCRAM users), ACLs,
/// transactions, cluster id, API versions, quotas, log dirs, the quorum.
/// Each works or meets its deliberate refusal.
fn admin_tools(t: &Target) {
    let carol = t.dir.path().join("carol.properties");
    let ca = t.backend.broker.ca_file();
    let carol_auth = ClientAuth::Scram {
        user: "carol",
        password: "carol-Kafka-Secret-3",
        ca: &ca,
    };
    write_client_properties(&carol, &carol_auth, &[]);
    let topic_configs = vec![
        t.create_topic("configs"),
        step(
            "kafka-configs --alter topics",
            tools::CONFIGS,
            &t.with(&[
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                "configs",
                "--add-config",
                "retention.ms=3600000",
            ]),
        )
        .shows(&["Completed updating config for topic configs."]),
        step(
            "kafka-configs --describe topics",
            tools::CONFIGS,
            &t.with(&[
                "--describe",
                "--entity-type",
                "topics",
                "--entity-name",
                "configs",
            ]),
        )
        .shows(&["retention.ms=3600000"]),
        step(
            "kafka-log-dirs --describe",
            tools::LOG_DIRS,
            &t.with(&["--describe", "--topic-list", "configs"]),
        )
        .shows(&[
            "\"logDir\":",
            "\"partition\":\"configs-0\"",
            "\"error\":null",
        ]),
    ];
    let scram = vec![
        step(
            "kafka-configs --alter users (SCRAM)",
            tools::CONFIGS,
            &t.with(&[
                "--alter",
                "--entity-type",
                "users",
                "--entity-name",
                "carol",
                "--add-config",
                "SCRAM-SHA-512=[password=carol-Kafka-Secret-3]",
            ]),
        )
        .shows(&["Completed updating config for user carol."]),
        // The new user logs in.
        step(
            "kafka-topics --list (as the new user)",
            tools::TOPICS,
            &[
                "--bootstrap-server",
                &t.bootstrap,
                "--command-config",
                carol.to_str().unwrap(),
                "--list",
            ],
        ),
        step(
            "kafka-configs --describe users",
            tools::CONFIGS,
            &t.with(&["--describe", "--entity-type", "users"]),
        )
        .shows(&["SCRAM credential configs for user-principal 'carol' are SCRAM-SHA-512"]),
    ];
    let acls = vec![
        step(
            "kafka-acls --add",
            tools::ACLS,
            &t.with(&[
                "--add",
                "--allow-principal",
                "User:alice",
                "--operation",
                "Read",
                "--topic",
                "tools",
            ]),
        )
        .shows(&["principal=User:alice"]),
        step("kafka-acls --list", tools::ACLS, &t.with(&["--list"]))
            .shows(&["name=tools", "principal=User:alice, host=*, operation=READ"]),
    ];
    let cluster = vec![
        step(
            "kafka-configs --describe brokers",
            tools::CONFIGS,
            &t.with(&["--describe", "--entity-type", "brokers"]),
        )
        .shows(&["configs for broker"]),
        step(
            "kafka-transactions list",
            tools::TRANSACTIONS,
            &t.with(&["list"]),
        )
        .shows(&["TransactionalId"]),
        step(
            "kafka-cluster cluster-id",
            tools::CLUSTER,
            &[
                "cluster-id",
                "--bootstrap-server",
                &t.bootstrap,
                "--command-config",
                &t.admin,
            ],
        )
        .shows(&["Cluster ID: "]),
        step(
            "kafka-broker-api-versions",
            tools::BROKER_API_VERSIONS,
            &t.with(&[]),
        )
        .shows(&["Produce(0)", "Fetch(1)", "SaslAuthenticate(36)"]),
    ];
    // Broker configs under Kafka's names, a dynamic cluster-wide default
    // set, shown and removed, a KIP-848 group config (issue #15 item 3).
    let node = if t.backend.column == Column::Embedded {
        "0"
    } else {
        "1"
    };
    let broker_configs = vec![
        step(
            "kafka-configs --describe brokers --all",
            tools::CONFIGS,
            &t.with(&[
                "--describe",
                "--entity-type",
                "brokers",
                "--entity-name",
                node,
                "--all",
            ]),
        )
        .shows(&[
            "All configs for broker",
            "connections.max.reauth.ms=",
            "sasl.enabled.mechanisms=",
            "max.connections.per.ip=",
            "ssl.keystore.key=null sensitive=true",
        ]),
        step(
            "kafka-configs --alter brokers --entity-default",
            tools::CONFIGS,
            &t.with(&[
                "--alter",
                "--entity-type",
                "brokers",
                "--entity-default",
                "--add-config",
                "log.retention.ms=5400000",
            ]),
        )
        .shows(&["Completed updating default config for brokers in the cluster."]),
        step(
            "kafka-configs --describe brokers --entity-default",
            tools::CONFIGS,
            &t.with(&["--describe", "--entity-type", "brokers", "--entity-default"]),
        )
        .shows(&[
            "Default configs for brokers in the cluster are:",
            "log.retention.ms=5400000",
        ]),
        step(
            "kafka-configs --alter brokers --entity-default --delete-config",
            tools::CONFIGS,
            &t.with(&[
                "--alter",
                "--entity-type",
                "brokers",
                "--entity-default",
                "--delete-config",
                "log.retention.ms",
            ]),
        )
        .shows(&["Completed updating default config for brokers in the cluster."]),
        step(
            "kafka-configs --alter groups",
            tools::CONFIGS,
            &t.with(&[
                "--alter",
                "--entity-type",
                "groups",
                "--entity-name",
                "tools-cfg",
                "--add-config",
                "consumer.session.timeout.ms=50000",
            ]),
        )
        .shows(&["Completed updating config for group tools-cfg."]),
        step(
            "kafka-configs --describe groups",
            tools::CONFIGS,
            &t.with(&[
                "--describe",
                "--entity-type",
                "groups",
                "--entity-name",
                "tools-cfg",
            ]),
        )
        .shows(&["consumer.session.timeout.ms=50000"]),
    ];
    let refusals = vec![step(
        "kafka-metadata-quorum describe --status",
        tools::METADATA_QUORUM,
        &t.with(&["describe", "--status"]),
    )
    .refused_on(
        BOTH,
        "UnsupportedVersionException",
        "DescribeQuorum (API 55): Portcullis is not a KRaft voter; a gateway's upstream \
         quorum is described at the upstream",
    )];
    t.run(
        "admin tools",
        vec![vec![
            topic_configs,
            scram,
            acls,
            cluster,
            broker_configs,
            refusals,
        ]],
    );
}

// ---------------------------------------------------------------------------
// Portcullis as a gateway in front of the cluster
// ---------------------------------------------------------------------------

const SERVICE: (&str, &str) = ("gateway-svc", "gateway-svc-Kafka-Secret-4");

/// Portcullis in gateway mode in front of a 3-node Kafka cluster: clients
/// log in to the gateway (SASL_SSL, SCRAM-SHA-512, the gateway's own user
/// and CA), the gateway reaches Kafka over SASL_SSL as its service user
/// (a Kafka SCRAM user, Kafka's CA). Kafka's tools create a
/// replication-factor-3 topic, produce (acks=all, idempotent) and consume
/// in a group through the gateway; Kafka's side is then read directly: the
/// topic has three in-sync replicas, the records are there, and the group's
/// offsets were committed in Kafka.
#[test]
fn gateway_in_front_of_three_node_cluster() {
    let kafka = KafkaCluster::start(
        "gw3",
        KafkaOpts {
            nodes: 3,
            listeners: &[Listener::SaslSsl],
            users: &[SERVICE],
            ..Default::default()
        },
    );
    let dir = common::scratch("kafka-gateway");
    let upstream: Vec<String> = (0..kafka.nodes())
        .map(|i| format!("\"{}\"", kafka.addr(i, Listener::SaslSsl)))
        .collect();
    // `sasl:` (the gateway's own credential store) is spelled out: the
    // harness adds its own only when the text has no `sasl:` at all, and
    // the upstream section has one.
    let yaml = format!(
        "backend: gateway\ngateway:\n  bootstrap_servers: [{}]\n  security_protocol: SASL_SSL\n  tls:\n    ca_file: {}\n  sasl:\n    username: {}\n    password: {}\nsasl:\n  credentials: {}\n",
        upstream.join(", "),
        kafka.ca_file().display(),
        SERVICE.0,
        SERVICE.1,
        dir.path().join("credentials.yaml").display()
    );
    let gw = Broker::start_secure(dir.path(), &yaml);
    gw.add_user(ALICE.0, ALICE.1);
    gw.wait_users_loaded(2, Duration::from_secs(60));
    let gw_props = dir.path().join("alice.properties");
    let gw_ca = gw.ca_file();
    write_client_properties(
        &gw_props,
        &ClientAuth::Scram {
            user: ALICE.0,
            password: ALICE.1,
            ca: &gw_ca,
        },
        &[],
    );
    let gw_props = gw_props.to_str().unwrap();
    let gw_bootstrap = gw.addr("SASL_SSL").to_string();
    let context = || format!("{}\n{}", common::log_tail(&gw, 40), kafka.logs_tail(20));
    let must = |run: ToolRun| -> String {
        if !run.ok() {
            panic!("{run}\n{}", context());
        }
        run.stdout
    };

    must(run_tool(
        tools::TOPICS,
        &[
            "--bootstrap-server",
            &gw_bootstrap,
            "--command-config",
            gw_props,
            "--create",
            "--topic",
            "through-gateway",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
        "",
    ));
    let sent = records("gw-", 300);
    let produce = produce_args(&gw_bootstrap, gw_props, "through-gateway");
    let produce: Vec<&str> = produce.iter().map(String::as_str).collect();
    must(run_tool(
        tools::CONSOLE_PRODUCER,
        &produce,
        &(sent.join("\n") + "\n"),
    ));
    let consume = consume_args(
        &gw_bootstrap,
        gw_props,
        "through-gateway",
        Some("gw-readers"),
        300,
    );
    let consume: Vec<&str> = consume.iter().map(String::as_str).collect();
    let out = must(run_tool(tools::CONSOLE_CONSUMER, &consume, ""));
    if let Err(e) = read_back(&sent)(&out) {
        panic!("through the gateway: {e}\n{}", context());
    }

    // Kafka's side, as Kafka's admin, directly.
    let bootstrap = kafka.bootstrap(Listener::SaslSsl);
    let admin = kafka.admin_properties(Listener::SaslSsl);
    let with = |extra: &[&str]| -> Vec<String> {
        [
            "--bootstrap-server",
            &bootstrap,
            "--command-config",
            admin.to_str().unwrap(),
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let outcomes = run_chains(
        vec![
            vec![step(
                "kafka-topics --describe (Kafka)",
                tools::TOPICS,
                &with(&["--describe", "--topic", "through-gateway"]),
            )
            .shows(&["PartitionCount: 3", "ReplicationFactor: 3"])],
            vec![step(
                "kafka-get-offsets (Kafka)",
                tools::GET_OFFSETS,
                &with(&["--topic", "through-gateway"]),
            )
            .check(|out| {
                let total: i64 = out
                    .lines()
                    .filter_map(|l| l.rsplit(':').next()?.parse::<i64>().ok())
                    .sum();
                if total == 300 {
                    Ok(())
                } else {
                    Err(format!("end offsets add up to {total}, not 300"))
                }
            })],
            vec![step(
                "kafka-consumer-groups --describe (Kafka)",
                tools::CONSUMER_GROUPS,
                &with(&["--describe", "--group", "gw-readers"]),
            )
            .check(|out| {
                let committed: i64 = out
                    .lines()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>())
                    .filter(|f| f.first() == Some(&"gw-readers"))
                    .filter_map(|f| f.get(3)?.parse::<i64>().ok())
                    .sum();
                if committed == 300 {
                    Ok(())
                } else {
                    Err(format!("committed offsets add up to {committed}, not 300"))
                }
            })],
        ],
        None,
    );
    for o in &outcomes {
        eprintln!(
            "  {:<44} {:>5.1}s  {:?}",
            o.name,
            o.run.elapsed.as_secs_f64(),
            o.verdict
        );
        if let Err(e) = &o.verdict {
            panic!("{}: {e}\n{}\n{}", o.name, o.run, context());
        }
        if o.name.starts_with("kafka-topics --describe") {
            assert_eq!(assert_in_sync(&o.run.stdout, 3), 3, "{}", o.run.stdout);
        }
    }
    assert_eq!(outcomes.len(), 3);
}
