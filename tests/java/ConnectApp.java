/*
 * A Kafka Connect worker in distributed mode, plus the few admin and
 * client steps its test needs around it. Run by tests/kafka_connect.rs as
 * a single-file source program (plain Java 17, no build) on the jars of
 * tests/kafka/pom.xml:
 *
 *   java -cp 'target/kafka-jars/<version>/*' tests/java/ConnectApp.java MODE [options]
 *
 * Modes:
 *
 *   worker  --worker-config F --log4j L
 *           Apache Kafka's own distributed worker
 *           (org.apache.kafka.connect.cli.ConnectDistributed F), logging
 *           with the log4j2 configuration L (INFO to stderr). SIGTERM stops
 *           it cleanly (Connect's shutdown hook).
 *   setup   --config F --user U --group G --sink-group S --topics T1,T2,..
 *           --data-topic D
 *           (as a super user) create D (one partition) and grant U what a
 *           Connect worker and its connectors need: READ on groups G (the
 *           workers' group) and S (the sink connector's consumers); READ,
 *           WRITE, DESCRIBE, CREATE and DESCRIBE_CONFIGS on each topic of
 *           T (the worker's internal topics) and on D. Prints `SETUP ok`
 *           once the ACLs are listed.
 *   verify  --config F --describe T1,T2,.. --consume C1,C2,..
 *           prints `TOPIC <name> <partitions> <cleanup.policy> <source>`
 *           per topic of --describe (DescribeTopics and DescribeConfigs);
 *           then, for each topic of --consume, a consumer with no group
 *           reads every partition from the beginning to the end offsets it
 *           saw at the start and prints `REC <topic> <partition> <offset>
 *           <key> <value>` per record (`-` for a null key or value), then
 *           `CONSUMED <topic> <count> <sum of end offsets>`.
 *           [--settle T --at-most N --wait-ms MS] then reads topic T again,
 *           once a second, until it holds at most N records (a cleaner has
 *           compacted it) or MS pass; prints `SETTLED|UNSETTLED <topic>
 *           <records> <sum of end offsets> <ms waited>`.
 *
 * --config is a Java client properties file (SASL_SSL, SCRAM-SHA-512, PEM
 * truststore); the login in it decides who acts. Fields are tab-separated.
 * Client logging goes to stderr.
 */

import java.io.FileInputStream;
import java.io.InputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.StringDeserializer;

public class ConnectApp {

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            usage();
        }
        String mode = args[0];
        Map<String, String> opt = new HashMap<>();
        for (int i = 1; i < args.length; i++) {
            if (!args[i].startsWith("--") || i + 1 >= args.length) {
                usage();
            }
            opt.put(args[i], args[++i]);
        }
        if (mode.equals("worker")) {
            // Before any class touches log4j: the worker logs at INFO (the
            // tools' configuration of java_program says WARN).
            System.setProperty("log4j2.configurationFile", need(opt, "--log4j"));
            org.apache.kafka.connect.cli.ConnectDistributed.main(new String[] {need(opt, "--worker-config")});
            return;
        }
        Properties base = load(need(opt, "--config"));
        switch (mode) {
            case "setup" -> setup(base, need(opt, "--user"), need(opt, "--group"), need(opt, "--sink-group"),
                    list(need(opt, "--topics")), need(opt, "--data-topic"));
            case "verify" -> {
                describe(base, list(need(opt, "--describe")));
                for (String topic : list(need(opt, "--consume"))) {
                    consume(base, topic, true);
                }
                if (opt.containsKey("--settle")) {
                    settle(base, opt.get("--settle"), Long.parseLong(need(opt, "--at-most")),
                            Long.parseLong(need(opt, "--wait-ms")));
                }
            }
            default -> usage();
        }
        System.out.flush();
        // Client threads never keep the JVM alive past the report.
        System.exit(0);
    }

    static void usage() {
        System.err.println("usage: ConnectApp worker|setup|verify [options] (see the header)");
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

    static List<String> list(String csv) {
        return Arrays.asList(csv.split(","));
    }

    static Properties load(String path) throws Exception {
        Properties p = new Properties();
        try (InputStream in = new FileInputStream(path)) {
            p.load(in);
        }
        return p;
    }

    static void say(String... fields) {
        System.out.println(String.join("\t", fields));
        System.out.flush();
    }

    // ------------------------------------------------------------------
    // setup: the data topic and the worker's ACLs
    // ------------------------------------------------------------------

    static void setup(Properties base, String user, String group, String sinkGroup, List<String> internal,
            String data) throws Exception {
        try (Admin admin = Admin.create(base)) {
            try {
                admin.createTopics(List.of(new NewTopic(data, 1, (short) 1))).all().get(60, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
            String principal = "User:" + user;
            List<AclBinding> acls = new ArrayList<>();
            acls.add(allow(ResourceType.GROUP, group, principal, AclOperation.READ));
            acls.add(allow(ResourceType.GROUP, sinkGroup, principal, AclOperation.READ));
            List<String> topics = new ArrayList<>(internal);
            topics.add(data);
            for (String t : topics) {
                for (AclOperation op : List.of(AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE,
                        AclOperation.CREATE, AclOperation.DESCRIBE_CONFIGS)) {
                    acls.add(allow(ResourceType.TOPIC, t, principal, op));
                }
            }
            admin.createAcls(acls).all().get(60, TimeUnit.SECONDS);
            AclBindingFilter mine = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter(principal, null, AclOperation.ANY, AclPermissionType.ANY));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (true) {
                int found = admin.describeAcls(mine).values().get(60, TimeUnit.SECONDS).size();
                if (found >= acls.size()) {
                    say("ACLS", Integer.toString(found));
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

    static AclBinding allow(ResourceType type, String name, String principal, AclOperation op) {
        return new AclBinding(new ResourcePattern(type, name, PatternType.LITERAL),
                new AccessControlEntry(principal, "*", op, AclPermissionType.ALLOW));
    }

    // ------------------------------------------------------------------
    // describe: partitions and cleanup.policy of topics
    // ------------------------------------------------------------------

    static void describe(Properties base, List<String> topics) throws Exception {
        try (Admin admin = Admin.create(base)) {
            Map<String, TopicDescription> desc = admin.describeTopics(topics).allTopicNames().get(60,
                    TimeUnit.SECONDS);
            List<ConfigResource> resources = new ArrayList<>();
            for (String t : topics) {
                resources.add(new ConfigResource(ConfigResource.Type.TOPIC, t));
            }
            Map<ConfigResource, Config> configs = admin.describeConfigs(resources).all().get(60, TimeUnit.SECONDS);
            for (String t : topics) {
                ConfigEntry policy = configs.get(new ConfigResource(ConfigResource.Type.TOPIC, t))
                        .get("cleanup.policy");
                say("TOPIC", t, Integer.toString(desc.get(t).partitions().size()),
                        policy == null ? "-" : policy.value(), policy == null ? "-" : policy.source().name());
            }
        }
    }

    // ------------------------------------------------------------------
    // consume: a whole topic, as it is now
    // ------------------------------------------------------------------

    /** Reads `topic` to its end offsets; returns {records read, sum of the end offsets}. */
    static long[] consume(Properties base, String topic, boolean print) throws Exception {
        Properties p = new Properties();
        p.putAll(base);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        long count = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : consumer.partitionsFor(topic, Duration.ofSeconds(60))) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(30));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (consumer.position(tp, Duration.ofSeconds(30)) < end.get(tp)) {
                        done = false;
                    }
                }
                if (done) {
                    break;
                }
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("did not reach the end offsets " + end);
                }
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    if (r.offset() >= end.get(new TopicPartition(r.topic(), r.partition()))) {
                        continue;
                    }
                    if (print) {
                        say("REC", r.topic(), Integer.toString(r.partition()), Long.toString(r.offset()),
                                r.key() == null ? "-" : r.key(), r.value() == null ? "-" : r.value());
                    }
                    count++;
                }
            }
            long written = 0;
            for (long e : end.values()) {
                written += e;
            }
            if (print) {
                say("CONSUMED", topic, Long.toString(count), Long.toString(written));
            }
            return new long[] {count, written};
        }
    }

    /**
     * Reads `topic` again, once a second, until it holds at most `atMost`
     * records (a cleaner compacted it) or `waitMs` pass.
     */
    static void settle(Properties base, String topic, long atMost, long waitMs) throws Exception {
        long started = System.nanoTime();
        long deadline = started + TimeUnit.MILLISECONDS.toNanos(waitMs);
        while (true) {
            long[] r = consume(base, topic, false);
            long waited = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
            if (r[0] <= atMost || System.nanoTime() > deadline) {
                say(r[0] <= atMost ? "SETTLED" : "UNSETTLED", topic, Long.toString(r[0]), Long.toString(r[1]),
                        Long.toString(waited));
                return;
            }
            Thread.sleep(1000);
        }
    }
}
