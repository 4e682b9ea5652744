/*
 * Two Kafka Streams applications with exactly_once_v2, a stateless one with
 * a repartition topic and a stateful one with a state store, plus the few
 * client steps their tests need around them.
 * Run by tests/kafka_streams.rs as a single-file source program (plain
 * Java 17, no build) on the jars of tests/kafka/pom.xml:
 *
 *   java -cp 'target/kafka-jars/<version>/*' tests/java/StreamsApp.java MODE --config F [options]
 *
 * --config is a Java client properties file (SASL_SSL, SCRAM-SHA-512, PEM
 * truststore); the login in it decides who acts. Modes:
 *
 *   setup   --user U --app A --input I --output O
 *           (as a super user) create I and O with 3 partitions and grant U
 *           what a Kafka Streams application needs, as Kafka's security
 *           documentation lists it: READ on I, WRITE on O, ALL on topics
 *           prefixed A (internal topics), READ on group A, WRITE and
 *           DESCRIBE on transactional ids prefixed A, IDEMPOTENT_WRITE on
 *           the cluster. Prints `SETUP ok` once the ACLs are listed.
 *   produce --topic I --from N --to M
 *           an idempotent producer (acks=all) sends records N..M-1:
 *           key `u<i % 20>`, value `<i>`. Prints `PRODUCED <count>`.
 *   run     --app A --input I --output O --state-dir D [--delay-ms MS]
 *           [--group-protocol classic|streams] [--counts]
 *           [--topic-config k=v,k=v]
 *           the stateless application: I -> filter (drop i % 5 == 0) -> selectKey
 *           (`g<i % 7>`) -> repartition("rekeyed") -> mapValues
 *           (`out-<i>`, sleeping MS per record, so a test can kill it
 *           mid-stream) -> O. Prints `STATE <new>` on each state change
 *           (`STATE RUNNING` when it runs) and, every 100 ms,
 *           `PROGRESS <records mapped> <commits>` (the stream thread's
 *           commit-total). SIGTERM closes it cleanly (`CLOSED`).
 *           --counts runs the stateful application instead: I ->
 *           groupByKey -> count() into the RocksDB store `counts`
 *           (caching off: one changelog record and one output record per
 *           input record; its changelog `A-counts-changelog` is a
 *           compacted topic Streams creates) -> mapValues (the count as a
 *           decimal string, sleeping MS per record) -> O. A restore
 *           listener prints `RESTORE_START <store> <topic> <partition>
 *           <start offset> <end offset>` and `RESTORED <store> <topic>
 *           <partition> <records restored>` when it rebuilds the store
 *           from the changelog. --topic-config passes `topic.`-prefixed
 *           configs for the internal topics Streams creates.
 *   inspect --topic C --written N [--wait-ms MS]
 *           (as a super user) a changelog: prints `CONFIG <name> <value>`
 *           (DescribeConfigs: cleanup.policy and the compaction and
 *           segment settings), then reads C read_committed from its log
 *           start to its end, again every 500 ms until it holds fewer than
 *           N records (a cleaner pass removed some) or MS pass, and prints
 *           for the first and the last read `LOG <first|last> <partition>
 *           <log start> <end> <records> <bytes on disk>`, then `LATEST
 *           <key> <value>` per key (the value a big-endian long, as count()
 *           writes it) and `WAITED <ms>`.
 *   consume --topic O --expect N [--wait-ms MS]
 *           a read_committed consumer (no group: every partition assigned,
 *           from the beginning) reads until it has N distinct records and
 *           has reached the end of every partition (the last stable offset),
 *           or until MS pass; prints `REC <partition> <offset> <key>
 *           <value>` per record, `TOPIC <name>` per topic on the broker,
 *           `OFFSETS <topic> <partition> <start> <end>` for each partition
 *           of the output and repartition topics, `UNCOMMITTED <count>`
 *           (the output's records read with read_uncommitted), then
 *           `CONSUMED <count>`.
 *
 * setup and inspect take `--then-produce I --from N --to M`: then they
 * do what produce does, with the same login.
 *
 * Fields are tab-separated. Client logging goes to stderr.
 */

import java.io.FileInputStream;
import java.io.InputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueStore;

public class StreamsApp {

    static final int PARTITIONS = 3;

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            usage();
        }
        String mode = args[0];
        Map<String, String> opt = new HashMap<>();
        Set<String> flags = new HashSet<>();
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) {
                usage();
            }
            if (a.equals("--counts")) {
                flags.add(a);
            } else if (i + 1 < args.length) {
                opt.put(a, args[++i]);
            } else {
                usage();
            }
        }
        Properties base = load(need(opt, "--config"));
        switch (mode) {
            case "setup" -> setup(base, need(opt, "--user"), need(opt, "--app"), need(opt, "--input"),
                    need(opt, "--output"));
            case "produce" -> produce(base, need(opt, "--topic"), Integer.parseInt(need(opt, "--from")),
                    Integer.parseInt(need(opt, "--to")));
            case "run" -> run(base, need(opt, "--app"), need(opt, "--input"), need(opt, "--output"),
                    need(opt, "--state-dir"), Long.parseLong(opt.getOrDefault("--delay-ms", "0")),
                    opt.getOrDefault("--group-protocol", "classic"), flags.contains("--counts"),
                    opt.getOrDefault("--topic-config", ""));
            case "inspect" -> inspect(base, need(opt, "--topic"), Long.parseLong(need(opt, "--written")),
                    Long.parseLong(opt.getOrDefault("--wait-ms", "0")));
            case "consume" -> consume(base, need(opt, "--topic"), Integer.parseInt(need(opt, "--expect")),
                    Long.parseLong(opt.getOrDefault("--wait-ms", "60000")));
            default -> usage();
        }
        // A produce after setup or inspect saves the test a JVM start.
        if (opt.containsKey("--then-produce")) {
            produce(base, opt.get("--then-produce"), Integer.parseInt(need(opt, "--from")),
                    Integer.parseInt(need(opt, "--to")));
        }
        System.out.flush();
        // Client threads never keep the JVM alive past the report.
        System.exit(0);
    }

    static void usage() {
        System.err.println("usage: StreamsApp setup|produce|run|consume|inspect --config F [options] (see the header)");
        System.exit(2);
    }

    static String need(Map<String, String> opt, String key) {
        String v = opt.get(key);
        if (v == null) {
            System.err.println("missing " + key);
            usage();
        }
        return v;
    }

    static Properties load(String path) throws Exception {
        Properties p = new Properties();
        try (InputStream in = new FileInputStream(path)) {
            p.load(in);
        }
        return p;
    }

    static synchronized void say(String... fields) {
        System.out.println(String.join("\t", fields));
        System.out.flush();
    }

    // ------------------------------------------------------------------
    // setup: topics and the application's ACLs
    // ------------------------------------------------------------------

    static void setup(Properties base, String user, String app, String input, String output)
            throws Exception {
        try (Admin admin = Admin.create(base)) {
            List<NewTopic> topics = List.of(new NewTopic(input, PARTITIONS, (short) 1),
                    new NewTopic(output, PARTITIONS, (short) 1));
            for (NewTopic t : topics) {
                try {
                    admin.createTopics(List.of(t)).all().get(60, TimeUnit.SECONDS);
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw e;
                    }
                }
            }
            String principal = "User:" + user;
            List<AclBinding> acls = new ArrayList<>();
            acls.add(allow(ResourceType.TOPIC, input, PatternType.LITERAL, principal, AclOperation.READ));
            acls.add(allow(ResourceType.TOPIC, output, PatternType.LITERAL, principal, AclOperation.WRITE));
            acls.add(allow(ResourceType.TOPIC, app, PatternType.PREFIXED, principal, AclOperation.ALL));
            acls.add(allow(ResourceType.GROUP, app, PatternType.LITERAL, principal, AclOperation.READ));
            acls.add(allow(ResourceType.TRANSACTIONAL_ID, app, PatternType.PREFIXED, principal, AclOperation.WRITE));
            acls.add(allow(ResourceType.TRANSACTIONAL_ID, app, PatternType.PREFIXED, principal, AclOperation.DESCRIBE));
            acls.add(allow(ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL, principal,
                    AclOperation.IDEMPOTENT_WRITE));
            admin.createAcls(acls).all().get(60, TimeUnit.SECONDS);
            AclBindingFilter mine = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (true) {
                int found = admin.describeAcls(mine).values().get(60, TimeUnit.SECONDS).size();
                if (found >= acls.size()) {
                    break;
                }
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("only " + found + " of " + acls.size() + " ACLs listed");
                }
                Thread.sleep(100);
            }
        }
        say("SETUP", "ok");
    }

    static AclBinding allow(ResourceType type, String name, PatternType pattern, String principal, AclOperation op) {
        return new AclBinding(new ResourcePattern(type, name, pattern),
                new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW));
    }

    // ------------------------------------------------------------------
    // produce: the input
    // ------------------------------------------------------------------

    static void produce(Properties base, String topic, int from, int to) throws Exception {
        Properties p = new Properties();
        p.putAll(base);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
            for (int i = from; i < to; i++) {
                sent.add(producer.send(new ProducerRecord<>(topic, "u" + (i % 20), Integer.toString(i))));
            }
            producer.flush();
            for (java.util.concurrent.Future<?> f : sent) {
                f.get(60, TimeUnit.SECONDS);
            }
            say("PRODUCED", Integer.toString(sent.size()));
        }
    }

    // ------------------------------------------------------------------
    // run: the Streams application
    // ------------------------------------------------------------------

    static void run(Properties base, String app, String input, String output, String stateDir, long delayMs,
            String groupProtocol, boolean counts, String topicConfig) throws Exception {
        Properties p = new Properties();
        p.putAll(base);
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, "100");
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, "1");
        p.put(StreamsConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
        // Records of the repartition topic that every task has committed
        // are deleted (DeleteRecords) at the first commit after this
        // interval: every half second rather than Kafka's 30 s, so that a
        // short run exercises it too.
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, "500");
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class.getName());
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class.getName());
        // A member killed with -9 leaves the group after its session, not
        // after Kafka's 45 s default: the restart's rebalance waits for it.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), "10000");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), "1000");

        // Each output record leaves at once (Streams lingers 100 ms): a
        // kill -9 mid-transaction then leaves records of the open
        // transaction on the broker, which read_committed must never show.
        p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), "0");
        for (String kv : topicConfig.split(",")) {
            if (!kv.isEmpty()) {
                String[] f = kv.split("=", 2);
                p.put(StreamsConfig.topicPrefix(f[0]), f[1]);
            }
        }

        AtomicLong mapped = new AtomicLong();
        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> in = builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()));
        java.util.function.Function<String, String> slow = v -> {
            if (delayMs > 0) {
                try {
                    Thread.sleep(delayMs);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            mapped.incrementAndGet();
            return v;
        };
        if (counts) {
            // Caching off: every update reaches the changelog and the
            // output, so the changelog holds many versions of each key for
            // the cleaner to remove, and the output every count in order.
            in.groupByKey()
                    .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts")
                            .withCachingDisabled())
                    .toStream()
                    .mapValues(n -> slow.apply(Long.toString(n)))
                    .to(output, Produced.with(Serdes.String(), Serdes.String()));
        } else {
            in.filter((k, v) -> Integer.parseInt(v) % 5 != 0)
                    .selectKey((k, v) -> "g" + (Integer.parseInt(v) % 7))
                    .repartition(Repartitioned.<String, String>as("rekeyed").withNumberOfPartitions(PARTITIONS))
                    .mapValues(v -> "out-" + slow.apply(v))
                    .to(output, Produced.with(Serdes.String(), Serdes.String()));
        }
        Topology topology = builder.build();
        System.err.println(topology.describe());

        KafkaStreams streams = new KafkaStreams(topology, p);
        CountDownLatch closed = new CountDownLatch(1);
        streams.setStateListener((now, before) -> say("STATE", now.name()));
        streams.setGlobalStateRestoreListener(new StateRestoreListener() {
            @Override
            public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
                say("RESTORE_START", store, tp.topic(), Integer.toString(tp.partition()), Long.toString(start),
                        Long.toString(end));
            }

            @Override
            public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {
            }

            @Override
            public void onRestoreEnd(TopicPartition tp, String store, long total) {
                say("RESTORED", store, tp.topic(), Integer.toString(tp.partition()), Long.toString(total));
            }
        });
        streams.setUncaughtExceptionHandler(e -> {
            say("ERROR", e.getClass().getName(), String.valueOf(e.getMessage()).replace('\n', ' '));
            e.printStackTrace(System.err);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                    .SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            say("CLOSED");
            closed.countDown();
        }));
        streams.start();
        while (!closed.await(100, TimeUnit.MILLISECONDS)) {
            say("PROGRESS", Long.toString(mapped.get()), Long.toString(commits(streams)));
            KafkaStreams.State s = streams.state();
            if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.NOT_RUNNING) {
                break;
            }
        }
    }

    /** The stream threads' commit-total: transactions committed so far. */
    static long commits(KafkaStreams streams) {
        double total = 0;
        for (Map.Entry<MetricName, ? extends Metric> m : streams.metrics().entrySet()) {
            MetricName n = m.getKey();
            if (n.name().equals("commit-total") && n.group().equals("stream-thread-metrics")) {
                Object v = m.getValue().metricValue();
                if (v instanceof Number num) {
                    total += num.doubleValue();
                }
            }
        }
        return (long) total;
    }

    // ------------------------------------------------------------------
    // consume: the output, read_committed
    // ------------------------------------------------------------------

    static void consume(Properties base, String topic, int expect, long waitMs) throws Exception {
        Properties p = new Properties();
        p.putAll(base);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        Set<String> distinct = new HashSet<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : consumer.partitionsFor(topic, Duration.ofSeconds(60))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(waitMs);
            while (true) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    got.add(r);
                    distinct.add(r.key() + "=" + r.value());
                }
                if (distinct.size() >= expect) {
                    // Under read_committed the end offsets are the last
                    // stable offsets: everything committed so far.
                    Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(30));
                    boolean atEnd = true;
                    for (TopicPartition tp : tps) {
                        if (consumer.position(tp, Duration.ofSeconds(30)) < end.get(tp)) {
                            atEnd = false;
                        }
                    }
                    if (atEnd) {
                        break;
                    }
                }
                if (System.nanoTime() > deadline) {
                    System.err.println("consume: deadline with " + distinct.size() + " of " + expect);
                    break;
                }
            }
        }
        for (ConsumerRecord<String, String> r : got) {
            say("REC", Integer.toString(r.partition()), Long.toString(r.offset()), r.key(), r.value());
        }
        List<String> repartition = new ArrayList<>();
        try (Admin admin = Admin.create(base)) {
            for (String t : admin.listTopics(new ListTopicsOptions().listInternal(true)).names().get(60,
                    TimeUnit.SECONDS)) {
                say("TOPIC", t);
                if (t.endsWith("-repartition")) {
                    repartition.add(t);
                }
            }
        }
        // What a committed read does not show: records of aborted
        // transactions and the transaction markers, in the offsets of the
        // output topic; and how far Streams purged its repartition topic
        // (DeleteRecords), per partition: `OFFSETS <topic> <partition>
        // <start> <end>`.
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_uncommitted");
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (String t : repartition) {
                for (PartitionInfo pi : consumer.partitionsFor(t, Duration.ofSeconds(60))) {
                    tps.add(new TopicPartition(t, pi.partition()));
                }
            }
            for (PartitionInfo pi : consumer.partitionsFor(topic, Duration.ofSeconds(60))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            Map<TopicPartition, Long> start = consumer.beginningOffsets(tps, Duration.ofSeconds(30));
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(30));
            for (TopicPartition tp : tps) {
                say("OFFSETS", tp.topic(), Integer.toString(tp.partition()), Long.toString(start.get(tp)),
                        Long.toString(end.get(tp)));
            }
            // Records (not markers) the committed read skipped: those of
            // aborted transactions.
            List<TopicPartition> out = tps.stream().filter(tp -> tp.topic().equals(topic)).toList();
            consumer.assign(out);
            consumer.seekToBeginning(out);
            long all = 0;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (System.nanoTime() < deadline) {
                all += consumer.poll(Duration.ofMillis(200)).count();
                boolean atEnd = true;
                for (TopicPartition tp : out) {
                    if (consumer.position(tp, Duration.ofSeconds(30)) < end.get(tp)) {
                        atEnd = false;
                    }
                }
                if (atEnd) {
                    break;
                }
            }
            say("UNCOMMITTED", Long.toString(all));
        }
        say("CONSUMED", Integer.toString(got.size()));
    }

    // ------------------------------------------------------------------
    // inspect: a changelog topic, its configs and what the cleaner left
    // ------------------------------------------------------------------

    /** The configs of a changelog worth printing. */
    static final Set<String> SHOWN = Set.of("cleanup.policy", "segment.ms", "segment.bytes",
            "min.cleanable.dirty.ratio", "min.compaction.lag.ms", "max.compaction.lag.ms", "delete.retention.ms");

    static void inspect(Properties base, String topic, long written, long waitMs) throws Exception {
        List<TopicPartition> tps = new ArrayList<>();
        try (Admin admin = Admin.create(base)) {
            ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            Config config = admin.describeConfigs(List.of(r)).all().get(60, TimeUnit.SECONDS).get(r);
            for (ConfigEntry e : config.entries()) {
                if (SHOWN.contains(e.name())) {
                    say("CONFIG", e.name(), String.valueOf(e.value()));
                }
            }
            int partitions = admin.describeTopics(List.of(topic)).allTopicNames().get(60, TimeUnit.SECONDS)
                    .get(topic).partitions().size();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            long started = System.nanoTime();
            long deadline = started + TimeUnit.MILLISECONDS.toNanos(waitMs);
            List<String> first = null;
            while (true) {
                Map<String, Long> latest = new java.util.TreeMap<>();
                List<String> stats = readLog(base, admin, tps, latest);
                long records = stats.stream().mapToLong(l -> Long.parseLong(l.split("\t")[3])).sum();
                if (first == null) {
                    first = stats;
                }
                if (records < written || System.nanoTime() > deadline) {
                    for (String l : first) {
                        say("LOG", "first", l);
                    }
                    for (String l : stats) {
                        say("LOG", "last", l);
                    }
                    for (Map.Entry<String, Long> e : latest.entrySet()) {
                        say("LATEST", e.getKey(), Long.toString(e.getValue()));
                    }
                    say("WAITED", Long.toString(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started)));
                    return;
                }
                Thread.sleep(500);
            }
        }
    }

    /**
     * One read_committed pass over `tps` from the log start to the last
     * stable offset: `<partition> <log start> <end> <records> <bytes on
     * disk>` per partition; `latest` gets each key's last value.
     */
    static List<String> readLog(Properties base, Admin admin, List<TopicPartition> tps, Map<String, Long> latest)
            throws Exception {
        Properties p = new Properties();
        p.putAll(base);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        Map<Integer, Long> bytes = new HashMap<>();
        int broker = admin.describeCluster().nodes().get(60, TimeUnit.SECONDS).iterator().next().id();
        for (Map.Entry<Integer, Map<String, LogDirDescription>> b : admin.describeLogDirs(List.of(broker))
                .allDescriptions().get(60, TimeUnit.SECONDS).entrySet()) {
            for (LogDirDescription d : b.getValue().values()) {
                for (Map.Entry<TopicPartition, ReplicaInfo> ri : d.replicaInfos().entrySet()) {
                    if (tps.contains(ri.getKey())) {
                        bytes.merge(ri.getKey().partition(), ri.getValue().size(), Long::sum);
                    }
                }
            }
        }
        List<String> out = new ArrayList<>();
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(p)) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> start = consumer.beginningOffsets(tps, Duration.ofSeconds(30));
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(30));
            Map<Integer, Long> records = new HashMap<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (true) {
                for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    records.merge(r.partition(), 1L, Long::sum);
                    byte[] v = r.value();
                    if (v == null) {
                        latest.remove(r.key());
                    } else {
                        // count()'s changelog value: the count as an 8-byte
                        // big-endian long.
                        latest.put(r.key(), java.nio.ByteBuffer.wrap(v, v.length - 8, 8).getLong());
                    }
                }
                boolean atEnd = true;
                for (TopicPartition tp : tps) {
                    if (consumer.position(tp, Duration.ofSeconds(30)) < end.get(tp)) {
                        atEnd = false;
                    }
                }
                if (atEnd) {
                    break;
                }
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("could not read " + tps + " to its end " + end);
                }
            }
            for (TopicPartition tp : tps) {
                out.add(String.join("\t", Integer.toString(tp.partition()), Long.toString(start.get(tp)),
                        Long.toString(end.get(tp)), Long.toString(records.getOrDefault(tp.partition(), 0L)),
                        Long.toString(bytes.getOrDefault(tp.partition(), -1L))));
            }
        }
        return out;
    }
}
