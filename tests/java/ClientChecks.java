/*
 * The Java client (kafka-clients, the jars of tests/kafka/pom.xml) against
 * a Kafka-compatible broker over SASL_SSL + SCRAM-SHA-512: producers
 * (idempotent, transactional), consumers (groups, static membership,
 * read_committed) and Admin. Run by tests/java_clients.rs as a single-file
 * source program (plain Java 17, no build):
 *
 *   java -cp 'target/kafka-jars/<version>/*' tests/java/ClientChecks.java \
 *        --bootstrap 127.0.0.1:9093 --ca certs/ca.crt \
 *        --user alice --password S --admin-user admin --admin-password S \
 *        [--config client.properties] [--pkcs12 truststore.p12:changeit] \
 *        CHECK...
 *
 * The user's clients use --config when given (the README's Java
 * properties, filled in), else the same settings built from --bootstrap,
 * --ca, --user and --password; the admin's are the user's with the admin's
 * login. The checks run one after the other in this JVM, each independent
 * of the others (own topics, groups, transactional ids), and each prints one
 * tab-separated line on stdout:
 *
 *   OK    <check> <ms> <detail>
 *   FAIL  <check> <ms> <step> <exception class> <message>
 *
 * then `DONE <checks>`. Progress and client logging go to stderr. A FAIL
 * names the step that failed and the innermost meaningful exception (an
 * ExecutionException's cause), so a failure reads as what Kafka's client
 * saw: "TopicAuthorizationException: Not authorized to access topics".
 * Checks named probe_* test one behaviour where a broker may deliberately
 * differ from Apache Kafka; the caller decides what each back end should
 * answer.
 */

import java.io.FileInputStream;
import java.io.InputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.DescribeConfigsOptions;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListGroupsOptions;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.MemberToRemove;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.InvalidRecordException;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicCollection;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.ClusterAuthorizationException;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.apache.kafka.common.errors.GroupAuthorizationException;
import org.apache.kafka.common.errors.InvalidRequestException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.OffsetOutOfRangeException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.ResourceNotFoundException;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.errors.SslAuthenticationException;
import org.apache.kafka.common.errors.TopicAuthorizationException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class ClientChecks {

    // ------------------------------------------------------------------
    // Settings
    // ------------------------------------------------------------------

    static String bootstrap;
    static String caFile;
    static String user;
    static String password;
    static String adminUser;
    static String adminPassword;
    static String configFile;
    static String pkcs12;
    /** The user's client settings: --config, or built like the README's. */
    static Properties userBase;

    /** Deadline of one wait inside a check (records arriving, a group forming). */
    static final Duration WAIT = Duration.ofSeconds(30);

    /** What the current check is doing: reported with a failure. */
    static String step = "start";

    static final class CheckFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CheckFailed(String message) {
            super(message);
        }
    }

    interface Check {
        String run() throws Exception;
    }

    interface Action {
        void run() throws Exception;
    }

    public static void main(String[] args) throws Exception {
        List<String> checks = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.startsWith("--")) {
                String v = args[++i];
                switch (a) {
                    case "--bootstrap" -> bootstrap = v;
                    case "--ca" -> caFile = v;
                    case "--user" -> user = v;
                    case "--password" -> password = v;
                    case "--admin-user" -> adminUser = v;
                    case "--admin-password" -> adminPassword = v;
                    case "--config" -> configFile = v;
                    case "--pkcs12" -> pkcs12 = v;
                    default -> throw new IllegalArgumentException("unknown option " + a);
                }
            } else {
                checks.add(a);
            }
        }
        if (bootstrap == null || caFile == null || user == null || password == null
                || adminUser == null || adminPassword == null || checks.isEmpty()) {
            System.err.println("usage: ClientChecks --bootstrap B --ca CA --user U --password P"
                    + " --admin-user A --admin-password AP [--config F] [--pkcs12 F:PW] CHECK...");
            System.exit(2);
        }
        userBase = configFile != null ? load(configFile) : readmeProperties(user, password);

        Map<String, Check> all = new LinkedHashMap<>();
        all.put("login", ClientChecks::login);
        all.put("login_pkcs12", ClientChecks::loginPkcs12);
        all.put("login_refused", ClientChecks::loginRefused);
        all.put("grant_user_all", ClientChecks::grantUserAll);
        all.put("idempotent_producer_group_consumer", ClientChecks::idempotentProducerGroupConsumer);
        all.put("transactions_read_committed", ClientChecks::transactionsReadCommitted);
        all.put("static_membership", ClientChecks::staticMembership);
        all.put("consumer_group_protocol", ClientChecks::consumerGroupProtocol);
        all.put("admin_topics", ClientChecks::adminTopics);
        all.put("admin_configs", ClientChecks::adminConfigs);
        all.put("admin_broker_and_group_configs", ClientChecks::adminBrokerAndGroupConfigs);
        all.put("admin_acls", ClientChecks::adminAcls);
        all.put("admin_scram_credentials", ClientChecks::adminScramCredentials);
        all.put("admin_consumer_groups", ClientChecks::adminConsumerGroups);
        all.put("admin_describe_cluster", ClientChecks::adminDescribeCluster);
        all.put("admin_authorized_operations", ClientChecks::adminAuthorizedOperations);
        all.put("admin_delete_records_list_offsets", ClientChecks::adminDeleteRecordsListOffsets);
        all.put("probe_compact_topic", ClientChecks::probeCompactTopic);
        all.put("probe_scram_sha256", ClientChecks::probeScramSha256);
        all.put("probe_describe_cluster_as_user", ClientChecks::probeDescribeClusterAsUser);
        all.put("probe_describe_topics_as_user", ClientChecks::probeDescribeTopicsAsUser);
        if (checks.equals(List.of("all"))) {
            checks = new ArrayList<>(all.keySet());
            checks.remove("grant_user_all");
        }

        for (String name : checks) {
            Check c = all.get(name);
            if (c == null) {
                throw new IllegalArgumentException("unknown check " + name + "; known: " + all.keySet());
            }
            step = "start";
            long started = System.nanoTime();
            checkStarted = started;
            System.err.println("--- " + name);
            String line;
            try {
                String detail = c.run();
                line = String.join("\t", "OK", name, ms(started), oneLine(detail));
            } catch (Throwable t) {
                Throwable e = unwrap(t);
                System.err.println("check " + name + " failed at step '" + step + "':");
                t.printStackTrace(System.err);
                line = String.join("\t", "FAIL", name, ms(started), oneLine(step),
                        e.getClass().getName(), oneLine(String.valueOf(e.getMessage())));
            }
            System.out.println(line);
            System.out.flush();
        }
        System.out.println("DONE\t" + checks.size());
        System.out.flush();
        // Client threads (a fenced consumer's heartbeat, say) never keep
        // the JVM alive past the report.
        System.exit(0);
    }

    static String ms(long started) {
        return Long.toString(TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started));
    }

    static String oneLine(String s) {
        return s == null ? "" : s.replace('\t', ' ').replace('\n', ' ').replace('\r', ' ');
    }

    /** The exception a caller of the client API is about: futures unwrapped. */
    static Throwable unwrap(Throwable t) {
        while ((t instanceof ExecutionException || t instanceof CompletionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }

    static Properties load(String path) throws Exception {
        Properties p = new Properties();
        try (InputStream in = new FileInputStream(path)) {
            p.load(in);
        }
        return p;
    }

    /** The README's Java client properties for `u`. */
    static Properties readmeProperties(String u, String pw) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_SSL");
        p.put("sasl.mechanism", "SCRAM-SHA-512");
        p.put("sasl.jaas.config", jaas(u, pw));
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", caFile);
        return p;
    }

    static String jaas(String u, String pw) {
        return "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
                + u + "\" password=\"" + pw + "\";";
    }

    /** The user's settings with another login. */
    static Properties as(String u, String pw) {
        Properties p = new Properties();
        p.putAll(userBase);
        p.put("sasl.jaas.config", jaas(u, pw));
        return p;
    }

    static Properties userProps() {
        Properties p = new Properties();
        p.putAll(userBase);
        return p;
    }

    static Properties adminProps() {
        return as(adminUser, adminPassword);
    }

    // ------------------------------------------------------------------
    // Clients
    // ------------------------------------------------------------------

    static Admin admin(Properties base) {
        Properties p = new Properties();
        p.putAll(base);
        p.put("client.id", "java-checks-admin");
        p.put("request.timeout.ms", "15000");
        p.put("default.api.timeout.ms", "30000");
        p.put("retry.backoff.ms", "100");
        return Admin.create(p);
    }

    static Admin superAdmin() {
        return admin(adminProps());
    }

    static Admin userAdmin() {
        return admin(userProps());
    }

    static KafkaProducer<String, String> producer(Properties base, String... kv) {
        Properties p = new Properties();
        p.putAll(base);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("linger.ms", "5");
        p.put("request.timeout.ms", "15000");
        p.put("delivery.timeout.ms", "45000");
        p.put("max.block.ms", "30000");
        p.put("retry.backoff.ms", "100");
        put(p, kv);
        return new KafkaProducer<>(p);
    }

    static KafkaConsumer<String, String> consumer(Properties base, String... kv) {
        Properties p = new Properties();
        p.putAll(base);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        p.put("session.timeout.ms", "10000");
        p.put("heartbeat.interval.ms", "500");
        p.put("request.timeout.ms", "15000");
        p.put("default.api.timeout.ms", "30000");
        p.put("retry.backoff.ms", "100");
        put(p, kv);
        return new KafkaConsumer<>(p);
    }

    static void put(Properties p, String... kv) {
        for (int i = 0; i < kv.length; i += 2) {
            p.put(kv[i], kv[i + 1]);
        }
    }

    // ------------------------------------------------------------------
    // Helpers
    // ------------------------------------------------------------------

    static long checkStarted = System.nanoTime();

    static void step(String s) {
        step = s;
        System.err.println("  . +" + ms(checkStarted) + "ms " + s);
    }

    static void need(boolean ok, String what) {
        if (!ok) {
            throw new CheckFailed(what);
        }
    }

    static <T> T get(Future<T> f) throws Exception {
        return f.get(45, TimeUnit.SECONDS);
    }

    /** Runs `a` and returns what it threw (unwrapped); fails when it does not throw `want`. */
    static Throwable expectThrows(Class<? extends Throwable> want, Action a) throws Exception {
        return expectThrows(List.of(want), a);
    }

    /** Runs `a` and returns what it threw (unwrapped); fails when it throws none of `wanted`. */
    static Throwable expectThrows(List<Class<? extends Throwable>> wanted, Action a) throws Exception {
        String names = wanted.stream().map(Class::getSimpleName).collect(Collectors.joining(" or "));
        try {
            a.run();
        } catch (Throwable t) {
            Throwable e = unwrap(t);
            for (Throwable c = e; c != null; c = c.getCause()) {
                for (Class<? extends Throwable> want : wanted) {
                    if (want.isInstance(c)) {
                        return c;
                    }
                }
            }
            throw new CheckFailed("wanted " + names + ", got " + e.getClass().getName() + ": " + e.getMessage());
        }
        throw new CheckFailed("wanted " + names + ", but it succeeded");
    }

    /** Polls `f` until it gives a non-null value or WAIT passes. */
    static <T> T eventually(String what, Supplier<T> f) throws Exception {
        long deadline = System.nanoTime() + WAIT.toNanos();
        RuntimeException last = null;
        while (System.nanoTime() < deadline) {
            try {
                T v = f.get();
                if (v != null) {
                    return v;
                }
            } catch (RuntimeException e) {
                last = e;
            }
            Thread.sleep(100);
        }
        throw new CheckFailed("timed out waiting for " + what + (last == null ? "" : " (last: " + unwrap(last) + ")"));
    }

    static <T> T unchecked(Callable0<T> c) {
        try {
            return c.call();
        } catch (RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new CompletionException(e);
        }
    }

    interface Callable0<T> {
        T call() throws Exception;
    }

    static void createTopic(Admin a, String name, int partitions, Map<String, String> configs) throws Exception {
        step("create topic " + name);
        // The broker's default replication factor: 1 on a single node, 3
        // behind a gateway in front of a 3-broker cluster.
        NewTopic t = new NewTopic(name, Optional.of(partitions), Optional.empty()).configs(configs);
        get(a.createTopics(List.of(t)).all());
        // Leaders known to this client before anyone produces.
        eventually("metadata of " + name, () -> unchecked(() -> {
            TopicDescription d = get(a.describeTopics(List.of(name)).allTopicNames()).get(name);
            return d.partitions().size() == partitions
                    && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty())
                    ? d : null;
        }));
    }

    /** Sends records key-i/value-i (i in [from, to)) and waits for every acknowledgement. */
    static List<RecordMetadata> produce(KafkaProducer<String, String> p, String topic, Integer partition,
            String prefix, int from, int to) throws Exception {
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        for (int i = from; i < to; i++) {
            fs.add(p.send(new ProducerRecord<>(topic, partition, prefix + "k" + i, prefix + "v" + i)));
        }
        p.flush();
        List<RecordMetadata> out = new ArrayList<>();
        for (Future<RecordMetadata> f : fs) {
            out.add(get(f));
        }
        return out;
    }

    /** Polls until `n` records arrived (then a short extra poll for any excess) or WAIT passes. */
    static List<ConsumerRecord<String, String>> poll(KafkaConsumer<String, String> c, int n) {
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (got.size() < n && System.nanoTime() < deadline) {
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                got.add(r);
            }
        }
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(300))) {
            got.add(r);
        }
        return got;
    }

    /** Reads (assigned) `tps` from their current positions up to the end offsets the consumer sees. */
    static List<ConsumerRecord<String, String>> readToEnd(KafkaConsumer<String, String> c,
            Collection<TopicPartition> tps) throws Exception {
        Map<TopicPartition, Long> end = c.endOffsets(tps);
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
            if (System.nanoTime() > deadline) {
                throw new CheckFailed("reading to the end offsets " + end + ": positions "
                        + tps.stream().map(tp -> tp + "=" + c.position(tp)).collect(Collectors.joining(",")));
            }
            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                got.add(r);
            }
        }
        return got;
    }

    static List<String> values(List<ConsumerRecord<String, String>> rs) {
        return rs.stream().map(ConsumerRecord::value).collect(Collectors.toList());
    }

    static List<String> range(String prefix, int from, int to) {
        List<String> out = new ArrayList<>();
        for (int i = from; i < to; i++) {
            out.add(prefix + i);
        }
        return out;
    }

    static ConsumerGroupDescription describeGroup(Admin a, String group) throws Exception {
        return get(a.describeConsumerGroups(List.of(group)).all()).get(group);
    }

    static ConfigEntry configEntry(Admin a, ConfigResource r, String name) throws Exception {
        Config c = get(a.describeConfigs(List.of(r)).all()).get(r);
        return c.get(name);
    }

    /** One listTopics as the client `p` describes: proves login and TLS. */
    static Set<String> listTopics(Properties p) throws Exception {
        try (Admin a = admin(p)) {
            return get(a.listTopics().names());
        }
    }

    // ------------------------------------------------------------------
    // Logins
    // ------------------------------------------------------------------

    /** The user (the README's settings, PEM truststore of the broker's CA) and the admin log in. */
    static String login() throws Exception {
        step("user lists topics (" + (configFile != null ? "--config " + configFile : "built settings") + ")");
        Set<String> topics = listTopics(userProps());
        step("admin lists topics");
        listTopics(adminProps());
        return "user and admin logged in over SASL_SSL/SCRAM-SHA-512 with a PEM truststore; "
                + topics.size() + " topics visible";
    }

    /** The README's other truststore: a PKCS12 file made with keytool from the CA. */
    static String loginPkcs12() throws Exception {
        need(pkcs12 != null, "--pkcs12 FILE:PASSWORD not given");
        String[] fp = pkcs12.split(":", 2);
        Properties p = userProps();
        p.put("ssl.truststore.type", "PKCS12");
        p.put("ssl.truststore.location", fp[0]);
        p.put("ssl.truststore.password", fp[1]);
        step("user lists topics with a PKCS12 truststore");
        listTopics(p);
        return "PKCS12 truststore from keytool works";
    }

    /** A wrong password, an unknown user and no trust in the broker's CA are refused as Kafka refuses them. */
    static String loginRefused() throws Exception {
        List<String> seen = new ArrayList<>();
        step("wrong password");
        Properties wrong = as(user, password + "-wrong");
        seen.add("wrong password: " + expectThrows(SaslAuthenticationException.class, () -> listTopics(wrong))
                .getClass().getSimpleName());
        step("unknown user");
        Properties nobody = as("java-nobody", "nobody-secret-1");
        seen.add("unknown user: " + expectThrows(SaslAuthenticationException.class, () -> listTopics(nobody))
                .getClass().getSimpleName());
        step("JDK default truststore (not the broker's CA)");
        Properties untrusted = userProps();
        untrusted.remove("ssl.truststore.type");
        untrusted.remove("ssl.truststore.location");
        untrusted.remove("ssl.truststore.password");
        seen.add("untrusted CA: " + expectThrows(SslAuthenticationException.class, () -> listTopics(untrusted))
                .getClass().getSimpleName());
        return String.join("; ", seen);
    }

    /** Apache Kafka only: the rights the Portcullis test ACL file gives every user (all on topics, groups, transactional ids). */
    static String grantUserAll() throws Exception {
        try (Admin a = superAdmin()) {
            step("createAcls for User:" + user);
            List<AclBinding> bs = new ArrayList<>();
            for (ResourceType rt : List.of(ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID)) {
                bs.add(new AclBinding(new ResourcePattern(rt, "*", PatternType.LITERAL),
                        new AccessControlEntry("User:" + user, "*", AclOperation.ALL, AclPermissionType.ALLOW)));
            }
            get(a.createAcls(bs).all());
            step("wait until in force");
            eventually("the user's rights", () -> unchecked(() -> {
                Collection<AclBinding> found = get(a.describeAcls(new AclBindingFilter(ResourcePatternFilter.ANY,
                        new AccessControlEntryFilter("User:" + user, null, AclOperation.ANY, AclPermissionType.ANY)))
                        .values());
                return found.size() >= 3 ? found : null;
            }));
        }
        return "User:" + user + " may do all on topics, groups and transactional ids";
    }

    // ------------------------------------------------------------------
    // Producers and consumers
    // ------------------------------------------------------------------

    static String idempotentProducerGroupConsumer() throws Exception {
        String topic = "java-idem";
        String group = "java-idem-g";
        int n = 300;
        try (Admin a = superAdmin()) {
            createTopic(a, topic, 3, Map.of());
        }
        step("idempotent producer, acks=all, " + n + " records");
        Map<Integer, List<Long>> offsets = new TreeMap<>();
        Map<Integer, List<String>> sentOrder = new TreeMap<>();
        try (KafkaProducer<String, String> p = producer(userProps(), "max.in.flight.requests.per.connection", "5")) {
            List<RecordMetadata> md = produce(p, topic, null, "", 0, n);
            for (int i = 0; i < n; i++) {
                offsets.computeIfAbsent(md.get(i).partition(), k -> new ArrayList<>()).add(md.get(i).offset());
                sentOrder.computeIfAbsent(md.get(i).partition(), k -> new ArrayList<>()).add("v" + i);
            }
        }
        step("acknowledged offsets are 0..n-1 per partition");
        for (Map.Entry<Integer, List<Long>> e : offsets.entrySet()) {
            List<Long> os = new ArrayList<>(e.getValue());
            for (int i = 0; i < os.size(); i++) {
                need(os.get(i) == i, "partition " + e.getKey() + ": acknowledged offsets " + os);
            }
        }
        need(offsets.size() == 3, "records went to partitions " + offsets.keySet());

        step("consumer in group " + group + " reads them back");
        Map<Integer, List<String>> readOrder = new TreeMap<>();
        try (KafkaConsumer<String, String> c = consumer(userProps(), "group.id", group)) {
            c.subscribe(List.of(topic));
            List<ConsumerRecord<String, String>> got = poll(c, n);
            need(got.size() == n, "read " + got.size() + " records, want " + n);
            for (ConsumerRecord<String, String> r : got) {
                need(r.key().equals("k" + r.value().substring(1)), "key/value mismatch " + r);
                readOrder.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.value());
            }
            need(readOrder.equals(sentOrder), "per-partition order differs from the acknowledged order");
            step("commitSync, committed == end offsets");
            c.commitSync();
            Set<TopicPartition> tps = c.assignment();
            need(tps.size() == 3, "assignment " + tps);
            Map<TopicPartition, OffsetAndMetadata> committed = c.committed(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            for (TopicPartition tp : tps) {
                need(committed.get(tp) != null && committed.get(tp).offset() == end.get(tp),
                        "committed " + committed + " vs end " + end);
            }
        }
        return n + " records, 3 partitions, offsets contiguous, read back once each in order by a group; committed == end";
    }

    static String transactionsReadCommitted() throws Exception {
        String topic = "java-txn";
        String input = "java-txn-in";
        String group = "java-txn-ctp";
        String txnId = "java-txn-1";
        TopicPartition tp = new TopicPartition(topic, 0);
        TopicPartition inTp = new TopicPartition(input, 0);
        try (Admin a = superAdmin()) {
            createTopic(a, topic, 1, Map.of());
            createTopic(a, input, 1, Map.of());
        }
        step("non-transactional input records");
        try (KafkaProducer<String, String> p = producer(userProps())) {
            produce(p, input, 0, "in-", 0, 5);
        }
        KafkaProducer<String, String> tx = producer(userProps(), "transactional.id", txnId,
                "transaction.timeout.ms", "60000");
        try {
            step("initTransactions");
            tx.initTransactions();
            step("T1 commit c0..c4");
            tx.beginTransaction();
            for (int i = 0; i < 5; i++) {
                tx.send(new ProducerRecord<>(topic, 0, "k", "c" + i));
            }
            tx.commitTransaction();
            step("T2 abort a0..a4");
            tx.beginTransaction();
            for (int i = 0; i < 5; i++) {
                tx.send(new ProducerRecord<>(topic, 0, "k", "a" + i));
            }
            tx.flush();
            tx.abortTransaction();
            step("T3: consume-transform-produce, c5..c9 and the input offsets of group " + group);
            try (KafkaConsumer<String, String> in = consumer(userProps(), "group.id", group,
                    "isolation.level", "read_committed")) {
                in.subscribe(List.of(input));
                List<ConsumerRecord<String, String>> got = poll(in, 5);
                need(got.size() == 5, "input: read " + got.size());
                tx.beginTransaction();
                for (int i = 5; i < 10; i++) {
                    tx.send(new ProducerRecord<>(topic, 0, "k", "c" + i));
                }
                ConsumerGroupMetadata meta = in.groupMetadata();
                need(meta.generationId() > 0, "group metadata " + meta);
                tx.sendOffsetsToTransaction(Map.of(inTp, new OffsetAndMetadata(5)), meta);
                tx.commitTransaction();
            }
            step("T4 left open: o0");
            tx.beginTransaction();
            get(tx.send(new ProducerRecord<>(topic, 0, "k", "o0")));

            try (KafkaConsumer<String, String> rc = consumer(userProps(), "isolation.level", "read_committed");
                    KafkaConsumer<String, String> ru = consumer(userProps(), "isolation.level", "read_uncommitted")) {
                rc.assign(List.of(tp));
                rc.seekToBeginning(List.of(tp));
                ru.assign(List.of(tp));
                step("read_committed stops at the open transaction (last stable offset)");
                long lso = rc.endOffsets(List.of(tp)).get(tp);
                long hw = ru.endOffsets(List.of(tp)).get(tp);
                // c0..c4 + marker, a0..a4 + marker, c5..c9 + marker = 18; o0 at 18.
                need(lso == 18 && hw == 19, "read_committed end " + lso + " (want 18), read_uncommitted end " + hw
                        + " (want 19)");
                List<String> committed = values(readToEnd(rc, List.of(tp)));
                need(committed.equals(range("c", 0, 10)), "read_committed saw " + committed);
                step("commit T4; read_committed sees o0");
                tx.commitTransaction();
                List<String> more = values(poll(rc, 1));
                need(more.equals(List.of("o0")), "after commit, read_committed saw " + more);
                step("read_uncommitted sees aborted records too");
                ru.seekToBeginning(List.of(tp));
                List<String> everything = values(readToEnd(ru, List.of(tp)));
                List<String> want = new ArrayList<>(range("c", 0, 5));
                want.addAll(range("a", 0, 5));
                want.addAll(range("c", 5, 10));
                want.add("o0");
                need(everything.equals(want), "read_uncommitted saw " + everything);
            }
            step("offsets committed in T3 are the group's");
            try (Admin a = superAdmin()) {
                Map<TopicPartition, OffsetAndMetadata> offs = get(a.listConsumerGroupOffsets(group)
                        .partitionsToOffsetAndMetadata());
                need(offs.get(inTp) != null && offs.get(inTp).offset() == 5, "group offsets " + offs);
            }

            step("a second producer with the same transactional.id fences the first");
            try (KafkaProducer<String, String> tx2 = producer(userProps(), "transactional.id", txnId)) {
                tx2.initTransactions();
                // Kafka 4 (transaction version 2) answers the zombie's produce
                // with INVALID_PRODUCER_EPOCH; version 1 fences it in
                // AddPartitionsToTxn with PRODUCER_FENCED.
                Throwable fenced = expectThrows(List.of(ProducerFencedException.class,
                        InvalidProducerEpochException.class), () -> {
                    tx.beginTransaction();
                    tx.send(new ProducerRecord<>(topic, 0, "k", "zombie")).get(30, TimeUnit.SECONDS);
                    tx.commitTransaction();
                });
                tx2.beginTransaction();
                tx2.send(new ProducerRecord<>(topic, 0, "k", "f0"));
                tx2.commitTransaction();
                try (KafkaConsumer<String, String> rc = consumer(userProps(), "isolation.level", "read_committed")) {
                    rc.assign(List.of(tp));
                    rc.seek(tp, 19);
                    List<String> tail = values(readToEnd(rc, List.of(tp)));
                    need(tail.equals(List.of("f0")), "after fencing, read_committed saw " + tail);
                }
                return "commit/abort/open transaction: read_committed saw c0..c9 only, stopped at the LSO (18) "
                        + "while T4 was open, then o0; read_uncommitted saw all 16; TxnOffsetCommit offsets visible; "
                        + "zombie fenced (" + fenced.getClass().getSimpleName() + ")";
            }
        } finally {
            tx.close(Duration.ofSeconds(5));
        }
    }

    static String staticMembership() throws Exception {
        String topic = "java-static";
        String group = "java-static-g";
        String instance = "java-static-a";
        try (Admin a = superAdmin()) {
            createTopic(a, topic, 2, Map.of());
            try (KafkaProducer<String, String> p = producer(userProps())) {
                step("produce 20");
                produce(p, topic, null, "", 0, 20);
                String[] staticConf = {"group.id", group, "group.instance.id", instance, "session.timeout.ms", "30000"};
                String firstMember;
                try (KafkaConsumer<String, String> c1 = consumer(userProps(), staticConf)) {
                    step("static member " + instance + " joins and reads 20");
                    c1.subscribe(List.of(topic));
                    List<ConsumerRecord<String, String>> got = poll(c1, 20);
                    need(got.size() == 20, "read " + got.size());
                    need(c1.assignment().size() == 2, "assignment " + c1.assignment());
                    c1.commitSync();
                    step("describeConsumerGroups shows the static member");
                    ConsumerGroupDescription d = describeGroup(a, group);
                    need(d.members().size() == 1, "members " + d.members());
                    MemberDescription m = d.members().iterator().next();
                    need(m.groupInstanceId().equals(Optional.of(instance)), "member " + m);
                    need(d.groupState() == GroupState.STABLE, "state " + d.groupState());
                    firstMember = m.consumerId();
                }
                step("closed without leaving: still a member");
                ConsumerGroupDescription after = describeGroup(a, group);
                need(after.members().size() == 1
                        && after.members().iterator().next().groupInstanceId().equals(Optional.of(instance)),
                        "after close: members " + after.members());
                produce(p, topic, null, "", 20, 25);
                String fencedBy;
                try (KafkaConsumer<String, String> c2 = consumer(userProps(), staticConf)) {
                    step("the same instance comes back and resumes from the committed offsets");
                    c2.subscribe(List.of(topic));
                    List<ConsumerRecord<String, String>> got = poll(c2, 5);
                    need(values(got).stream().sorted().collect(Collectors.toList())
                            .equals(range("v", 20, 25)), "read " + values(got));
                    need(c2.assignment().size() == 2, "assignment " + c2.assignment());
                    c2.commitSync();
                    ConsumerGroupDescription d = describeGroup(a, group);
                    need(d.members().size() == 1, "members after rejoin " + d.members());
                    MemberDescription m = d.members().iterator().next();
                    need(m.groupInstanceId().equals(Optional.of(instance)) && !m.consumerId().equals(firstMember),
                            "after rejoin: " + m + " (first member id " + firstMember + ")");

                    step("a third consumer with the same group.instance.id fences the second");
                    try (KafkaConsumer<String, String> c3 = consumer(userProps(), staticConf)) {
                        c3.subscribe(List.of(topic));
                        eventually("c3's assignment", () -> {
                            c3.poll(Duration.ofMillis(200));
                            return c3.assignment().size() == 2 ? true : null;
                        });
                        Throwable t = expectThrows(FencedInstanceIdException.class, () -> {
                            long deadline = System.nanoTime() + WAIT.toNanos();
                            while (System.nanoTime() < deadline) {
                                c2.poll(Duration.ofMillis(200));
                                try {
                                    c2.commitSync();
                                } catch (CommitFailedException e) {
                                    // Kafka too, on a busy machine: c2 may
                                    // first see a rebalance and rejoin; the
                                    // fence must still follow (a rejoin that
                                    // took c3's place would not throw).
                                }
                            }
                        });
                        fencedBy = t.getClass().getSimpleName();
                    }
                }
                step("removeMembersFromConsumerGroup(" + instance + ")");
                get(a.removeMembersFromConsumerGroup(group,
                        new RemoveMembersFromConsumerGroupOptions(List.of(new MemberToRemove(instance)))).all());
                ConsumerGroupDescription empty = describeGroup(a, group);
                need(empty.members().isEmpty() && empty.groupState() == GroupState.EMPTY,
                        "after removal: " + empty.groupState() + " " + empty.members());
                return "static member kept across close, resumed with a new member id, duplicate instance fenced ("
                        + fencedBy + "), removed by instance id";
            }
        }
    }

    /**
     * A consumer of KIP-848's protocol (group.protocol=consumer): the
     * broker's heartbeat interval and session apply, and the client refuses
     * session.timeout.ms and heartbeat.interval.ms, so they are left out.
     */
    static KafkaConsumer<String, String> consumer848(Properties base, String... kv) {
        Properties p = new Properties();
        p.putAll(base);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        p.put("auto.offset.reset", "earliest");
        p.put("enable.auto.commit", "false");
        p.put("group.protocol", "consumer");
        p.put("request.timeout.ms", "15000");
        p.put("default.api.timeout.ms", "30000");
        p.put("retry.backoff.ms", "100");
        put(p, kv);
        return new KafkaConsumer<>(p);
    }

    /** Records what a consumer is told to give up. */
    static final class Revocations implements ConsumerRebalanceListener {
        final List<TopicPartition> revoked = new ArrayList<>();

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> parts) {
            revoked.addAll(parts);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> parts) {
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> parts) {
            revoked.addAll(parts);
        }
    }

    /** Polls both consumers until `done` holds or WAIT passes. */
    static void pollBoth(String what, KafkaConsumer<String, String> a, KafkaConsumer<String, String> b,
            List<ConsumerRecord<String, String>> got, Supplier<Boolean> done) {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (!done.get()) {
            if (System.nanoTime() > deadline) {
                throw new CheckFailed("timed out waiting for " + what + ": " + a.assignment() + " / "
                        + (b == null ? "-" : b.assignment()));
            }
            for (ConsumerRecord<String, String> r : a.poll(Duration.ofMillis(100))) {
                got.add(r);
            }
            if (b != null) {
                for (ConsumerRecord<String, String> r : b.poll(Duration.ofMillis(100))) {
                    got.add(r);
                }
            }
        }
    }

    /**
     * KIP-848 (group.protocol=consumer): the broker assigns. One member
     * gets all four partitions; a second joins and each ends with two, the
     * first giving up exactly the two that moved (incremental: the others
     * stay assigned throughout); describeConsumerGroups says CONSUMER with
     * both members and their partitions; the second leaves and the first
     * gets them back without giving anything up; commits made by these
     * members resume in a new member.
     */
    static String consumerGroupProtocol() throws Exception {
        String topic = "java-cgp";
        String group = "java-cgp-g";
        try (Admin a = superAdmin();
                KafkaProducer<String, String> p = producer(userProps())) {
            createTopic(a, topic, 4, Map.of());
            step("produce 40");
            produce(p, topic, null, "", 0, 40);
            List<ConsumerRecord<String, String>> got = new ArrayList<>();
            Revocations firstRevoked = new Revocations();
            String handOver;
            try (KafkaConsumer<String, String> c1 = consumer848(userProps(), "group.id", group, "client.id", "java-cgp-1")) {
                step("the first member gets all four partitions and 40 records");
                c1.subscribe(List.of(topic), firstRevoked);
                pollBoth("40 records", c1, null, got, () -> got.size() >= 40 && c1.assignment().size() == 4);
                c1.commitSync();
                Set<TopicPartition> before = new HashSet<>(c1.assignment());
                try (KafkaConsumer<String, String> c2 = consumer848(userProps(), "group.id", group, "client.id", "java-cgp-2")) {
                    step("a second member joins: 2 and 2, incrementally");
                    c2.subscribe(List.of(topic));
                    pollBoth("a 2/2 split", c1, c2, got,
                            () -> c1.assignment().size() == 2 && c2.assignment().size() == 2);
                    Set<TopicPartition> kept = new HashSet<>(c1.assignment());
                    need(before.containsAll(kept), "c1 kept " + kept + " of " + before);
                    need(firstRevoked.revoked.size() == 2 && kept.stream().noneMatch(firstRevoked.revoked::contains),
                            "c1 revoked " + firstRevoked.revoked + " and kept " + kept);
                    need(c2.assignment().stream().noneMatch(kept::contains), "c2 got " + c2.assignment());
                    handOver = "revoked " + firstRevoked.revoked.size() + " of 4";
                    step("describeConsumerGroups: a CONSUMER group with two members");
                    ConsumerGroupDescription d = eventually("a stable 2-member description", () -> unchecked(() -> {
                        ConsumerGroupDescription x = describeGroup(a, group);
                        return x.members().size() == 2 && x.groupState() == GroupState.STABLE ? x : null;
                    }));
                    need(d.type() == GroupType.CONSUMER, "type " + d.type());
                    for (MemberDescription m : d.members()) {
                        need(m.assignment().topicPartitions().size() == 2, "member " + m);
                    }
                    step("produce 40 more: both consume their own partitions");
                    produce(p, topic, null, "", 40, 80);
                    pollBoth("80 records", c1, c2, got, () -> got.size() >= 80);
                    c1.commitSync();
                    c2.commitSync();
                    firstRevoked.revoked.clear();
                }
                step("the second leaves: the first gets all four back, revoking nothing");
                pollBoth("all four back", c1, null, got, () -> c1.assignment().size() == 4);
                need(firstRevoked.revoked.isEmpty(), "c1 revoked " + firstRevoked.revoked);
                c1.commitSync();
            }
            List<String> vs = values(got).stream().sorted().distinct().collect(Collectors.toList());
            need(vs.size() == 80, "consumed " + vs.size() + " distinct of 80");
            step("a new member resumes at the commits");
            produce(p, topic, null, "", 80, 84);
            try (KafkaConsumer<String, String> c3 = consumer848(userProps(), "group.id", group)) {
                c3.subscribe(List.of(topic));
                List<ConsumerRecord<String, String>> more = poll(c3, 4);
                need(values(more).stream().sorted().collect(Collectors.toList()).equals(range("v", 80, 84)),
                        "resumed with " + values(more));
            }
            return "members split 4 partitions 2/2 (" + handOver + "), described as CONSUMER, the leaver's partitions went back without revocation, commits resumed";
        }
    }

    // ------------------------------------------------------------------
    // Admin
    // ------------------------------------------------------------------

    static String adminTopics() throws Exception {
        String topic = "java-admin-topic";
        try (Admin a = superAdmin()) {
            step("createTopics with a config");
            CreateTopicsResult r = a.createTopics(List.of(new NewTopic(topic, 2, (short) 1)
                    .configs(Map.of("retention.ms", "3600000"))));
            get(r.all());
            need(get(r.numPartitions(topic)) == 2, "numPartitions " + get(r.numPartitions(topic)));
            Uuid created = get(r.topicId(topic));
            need(created != null && !created.equals(Uuid.ZERO_UUID), "topicId " + created);
            step("createTopics again: TopicExistsException");
            expectThrows(TopicExistsException.class, () -> get(a.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all()));
            step("createTopics validateOnly creates nothing");
            get(a.createTopics(List.of(new NewTopic("java-admin-validate", 1, (short) 1)),
                    new CreateTopicsOptions().validateOnly(true)).all());
            step("listTopics");
            Set<String> names = eventually("the topic listed", () -> unchecked(() -> {
                Set<String> s = get(a.listTopics().names());
                return s.contains(topic) ? s : null;
            }));
            need(!names.contains("java-admin-validate"), "validateOnly created the topic: " + names);
            Set<String> withInternal = get(a.listTopics(new ListTopicsOptions().listInternal(true)).names());
            need(withInternal.containsAll(names), "listInternal lost topics");
            step("describeTopics by name and by id");
            TopicDescription d = get(a.describeTopics(List.of(topic)).allTopicNames()).get(topic);
            need(d.partitions().size() == 2 && !d.isInternal(), "description " + d);
            need(d.topicId().equals(created), "topic id " + d.topicId() + " vs created " + created);
            for (TopicPartitionInfo p : d.partitions()) {
                need(p.leader() != null && p.replicas().size() == 1 && p.isr().size() == 1, "partition " + p);
            }
            TopicDescription byId = get(a.describeTopics(TopicCollection.ofTopicIds(List.of(created))).allTopicIds())
                    .get(created);
            need(byId.name().equals(topic), "by id: " + byId);
            step("createPartitions to 3");
            get(a.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all());
            eventually("3 partitions", () -> unchecked(() -> get(a.describeTopics(List.of(topic)).allTopicNames())
                    .get(topic).partitions().size() == 3 ? true : null));
            step("deleteTopics");
            get(a.deleteTopics(List.of(topic)).all());
            eventually("the topic gone", () -> unchecked(() -> get(a.listTopics().names()).contains(topic) ? null : true));
            step("describe the deleted topic: UnknownTopicOrPartitionException");
            expectThrows(UnknownTopicOrPartitionException.class,
                    () -> get(a.describeTopics(List.of(topic)).allTopicNames()));
            step("delete a missing topic: UnknownTopicOrPartitionException");
            expectThrows(UnknownTopicOrPartitionException.class,
                    () -> get(a.deleteTopics(List.of("java-admin-missing")).all()));
        }
        return "create (configs, id, exists, validateOnly), list, describe by name/id, createPartitions, delete";
    }

    static String adminConfigs() throws Exception {
        String topic = "java-configs";
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        try (Admin a = superAdmin()) {
            createTopic(a, topic, 1, Map.of("retention.ms", "3600000"));
            step("describeConfigs: the topic's override and a default");
            Config c = get(a.describeConfigs(List.of(res), new DescribeConfigsOptions().includeSynonyms(true)).all())
                    .get(res);
            ConfigEntry ret = c.get("retention.ms");
            need(ret != null && ret.value().equals("3600000")
                    && ret.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, "retention.ms " + ret);
            ConfigEntry policy = c.get("cleanup.policy");
            need(policy != null && policy.value().equals("delete") && policy.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "cleanup.policy " + policy);
            need(c.get("segment.bytes") != null, "no segment.bytes among " + c.entries().size() + " entries");
            step("incrementalAlterConfigs SET retention.ms, max.message.bytes");
            get(a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("max.message.bytes", "2000000"), AlterConfigOp.OpType.SET))))
                    .all());
            // In a KRaft cluster a change is committed to the metadata log
            // and reaches each broker a moment later; describeConfigs may
            // ask one that has not applied it yet (Kafka behind a gateway).
            eventually("retention.ms and max.message.bytes set", () -> unchecked(() -> {
                Config c2 = get(a.describeConfigs(List.of(res)).all()).get(res);
                return c2.get("retention.ms").value().equals("7200000")
                        && c2.get("max.message.bytes").value().equals("2000000") ? c2 : null;
            }));
            step("incrementalAlterConfigs DELETE retention.ms: back to the default");
            get(a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE)))).all());
            eventually("retention.ms back to the default", () -> unchecked(() -> {
                ConfigEntry back = configEntry(a, res, "retention.ms");
                return back.value().equals("604800000")
                        && back.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG ? back : null;
            }));
            step("validateOnly changes nothing");
            get(a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "1000"), AlterConfigOp.OpType.SET))),
                    new org.apache.kafka.clients.admin.AlterConfigsOptions().validateOnly(true)).all());
            need(configEntry(a, res, "retention.ms").value().equals("604800000"), "validateOnly applied");
            step("an unknown config name: InvalidConfigurationException");
            expectThrows(InvalidConfigurationException.class, () -> get(a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET)))).all()));
            step("a bad value: InvalidConfigurationException");
            expectThrows(InvalidConfigurationException.class, () -> get(a.incrementalAlterConfigs(Map.of(res, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET)))).all()));
            step("describeConfigs of the broker");
            Node node = get(a.describeCluster().nodes()).iterator().next();
            ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, node.idString());
            Config bc = get(a.describeConfigs(List.of(broker)).all()).get(broker);
            need(!bc.entries().isEmpty(), "broker " + node.idString() + " has no configs");
            return "topic override/default sources, SET, DELETE, validateOnly, unknown name and bad value refused; broker "
                    + node.idString() + ": " + bc.entries().size() + " entries";
        }
    }

    /**
     * Broker configs (every setting under Kafka's name, read-only and
     * sensitive flags, a dynamic cluster-wide default that an existing topic
     * follows, a per-broker value, a static one refused) and KIP-848 group
     * configs (defaults, an override, Kafka's bounds), and who may do it.
     */
    static String adminBrokerAndGroupConfigs() throws Exception {
        String topic = "java-bcfg-follow";
        String group = "java-cfg-group";
        String denied = "java-cfg-denied";
        ConfigResource cluster = new ConfigResource(ConfigResource.Type.BROKER, "");
        ConfigResource topicRes = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        ConfigResource groupRes = new ConfigResource(ConfigResource.Type.GROUP, group);
        ConfigResource deniedRes = new ConfigResource(ConfigResource.Type.GROUP, denied);
        try (Admin a = superAdmin(); Admin u = userAdmin()) {
            Node node = get(a.describeCluster().nodes()).iterator().next();
            ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, node.idString());
            createTopic(a, topic, 1, Map.of());
            step("describeConfigs of broker " + node.idString() + " with synonyms and documentation");
            Config bc = get(a.describeConfigs(List.of(broker),
                    new DescribeConfigsOptions().includeSynonyms(true).includeDocumentation(true)).all()).get(broker);
            for (String k : List.of("connections.max.reauth.ms", "sasl.enabled.mechanisms", "listeners",
                    "advertised.listeners", "max.connections", "max.connections.per.ip", "default.replication.factor",
                    "min.insync.replicas", "offsets.retention.minutes", "transaction.max.timeout.ms",
                    "group.min.session.timeout.ms", "group.max.session.timeout.ms", "group.consumer.session.timeout.ms",
                    "log.retention.ms", "log.segment.bytes", "message.max.bytes", "num.partitions",
                    "auto.create.topics.enable", "socket.request.max.bytes")) {
                need(bc.get(k) != null, "broker config " + k + " missing among " + bc.entries().size());
            }
            need(bc.get("connections.max.reauth.ms").isReadOnly(), "connections.max.reauth.ms " + bc.get("connections.max.reauth.ms"));
            need(bc.get("num.partitions").isReadOnly(), "num.partitions " + bc.get("num.partitions"));
            for (String k : List.of("log.retention.ms", "message.max.bytes", "max.connections", "max.connections.per.ip")) {
                need(!bc.get(k).isReadOnly(), k + " is dynamic in Kafka: " + bc.get(k));
            }
            ConfigEntry ret = bc.get("log.retention.ms");
            need(ret.source() == ConfigEntry.ConfigSource.STATIC_BROKER_CONFIG
                    || ret.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG, "log.retention.ms before: " + ret);
            List<ConfigEntry> sensitive = bc.entries().stream().filter(ConfigEntry::isSensitive).toList();
            need(!sensitive.isEmpty(), "no sensitive broker config");
            for (ConfigEntry e : sensitive) {
                need(e.value() == null, "sensitive " + e.name() + " has a value");
            }
            // Kafka's log.retention.ms has no default value (log.retention.hours has).
            String before = ret.value();
            String retention = "5400000";
            try {
                step("incrementalAlterConfigs on the cluster-wide default: log.retention.ms=" + retention);
                get(a.incrementalAlterConfigs(Map.of(cluster, List.of(new AlterConfigOp(
                        new ConfigEntry("log.retention.ms", retention), AlterConfigOp.OpType.SET)))).all());
                step("the cluster-wide default lists it as DYNAMIC_DEFAULT_BROKER_CONFIG");
                eventually("the dynamic default described", () -> unchecked(() -> {
                    ConfigEntry e = get(a.describeConfigs(List.of(cluster)).all()).get(cluster).get("log.retention.ms");
                    return e != null && retention.equals(e.value())
                            && e.source() == ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG ? e : null;
                }));
                eventually("the broker's value", () -> unchecked(() -> {
                    ConfigEntry e = configEntry(a, broker, "log.retention.ms");
                    return retention.equals(e.value())
                            && e.source() == ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG ? e : null;
                }));
                step("the existing topic without an override follows");
                eventually("the topic's retention.ms", () -> unchecked(() -> {
                    ConfigEntry e = configEntry(a, topicRes, "retention.ms");
                    return retention.equals(e.value())
                            && e.source() == ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG ? e : null;
                }));
                step("a per-broker value: message.max.bytes on broker " + node.idString());
                get(a.incrementalAlterConfigs(Map.of(broker, List.of(new AlterConfigOp(
                        new ConfigEntry("message.max.bytes", "1048600"), AlterConfigOp.OpType.SET)))).all());
                eventually("the per-broker value", () -> unchecked(() -> {
                    ConfigEntry e = configEntry(a, broker, "message.max.bytes");
                    return "1048600".equals(e.value())
                            && e.source() == ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG ? e : null;
                }));
                step("a static config (num.partitions) is refused: InvalidRequestException");
                Throwable t = expectThrows(InvalidRequestException.class, () -> get(a.incrementalAlterConfigs(Map.of(cluster,
                        List.of(new AlterConfigOp(new ConfigEntry("num.partitions", "3"), AlterConfigOp.OpType.SET)))).all()));
                need(String.valueOf(t.getMessage()).contains("Cannot update these configs dynamically"), "message: " + t.getMessage());
            } finally {
                step("back to the static values");
                get(a.incrementalAlterConfigs(Map.of(
                        cluster, List.of(new AlterConfigOp(new ConfigEntry("log.retention.ms", ""), AlterConfigOp.OpType.DELETE)),
                        broker, List.of(new AlterConfigOp(new ConfigEntry("message.max.bytes", ""), AlterConfigOp.OpType.DELETE))))
                        .all());
            }
            eventually("log.retention.ms restored", () -> unchecked(() ->
                    java.util.Objects.equals(before, configEntry(a, broker, "log.retention.ms").value()) ? true : null));

            step("describeConfigs of group " + group + ": KIP-848 defaults");
            Config gc = get(a.describeConfigs(List.of(groupRes)).all()).get(groupRes);
            ConfigEntry session = gc.get("consumer.session.timeout.ms");
            need(session != null && gc.get("consumer.heartbeat.interval.ms") != null,
                    "group configs: " + gc.entries().stream().map(ConfigEntry::name).toList());
            need(session.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG
                    || session.source() == ConfigEntry.ConfigSource.STATIC_BROKER_CONFIG, "session before: " + session);
            String sessionDefault = session.value();
            step("incrementalAlterConfigs on the group: consumer.session.timeout.ms=50000");
            get(a.incrementalAlterConfigs(Map.of(groupRes, List.of(new AlterConfigOp(
                    new ConfigEntry("consumer.session.timeout.ms", "50000"), AlterConfigOp.OpType.SET)))).all());
            eventually("the group override", () -> unchecked(() -> {
                ConfigEntry e = configEntry(a, groupRes, "consumer.session.timeout.ms");
                return "50000".equals(e.value()) && e.source() == ConfigEntry.ConfigSource.DYNAMIC_GROUP_CONFIG ? e : null;
            }));
            step("below group.consumer.min.session.timeout.ms: InvalidConfigurationException");
            expectThrows(InvalidConfigurationException.class, () -> get(a.incrementalAlterConfigs(Map.of(groupRes, List.of(
                    new AlterConfigOp(new ConfigEntry("consumer.session.timeout.ms", "1000"), AlterConfigOp.OpType.SET)))).all()));
            step("an unknown group config: InvalidConfigurationException");
            expectThrows(InvalidConfigurationException.class, () -> get(a.incrementalAlterConfigs(Map.of(groupRes, List.of(
                    new AlterConfigOp(new ConfigEntry("no.such.group.config", "1"), AlterConfigOp.OpType.SET)))).all()));
            step("DELETE: back to the default");
            get(a.incrementalAlterConfigs(Map.of(groupRes, List.of(new AlterConfigOp(
                    new ConfigEntry("consumer.session.timeout.ms", ""), AlterConfigOp.OpType.DELETE)))).all());
            eventually("the group default again", () -> unchecked(() -> {
                ConfigEntry e = configEntry(a, groupRes, "consumer.session.timeout.ms");
                return sessionDefault.equals(e.value()) && e.source() != ConfigEntry.ConfigSource.DYNAMIC_GROUP_CONFIG ? e : null;
            }));

            step("the user (no cluster rights) describes the broker: ClusterAuthorizationException");
            expectThrows(ClusterAuthorizationException.class, () -> get(u.describeConfigs(List.of(broker)).all()));
            step("the user alters the cluster-wide default: ClusterAuthorizationException");
            expectThrows(ClusterAuthorizationException.class, () -> get(u.incrementalAlterConfigs(Map.of(cluster, List.of(
                    new AlterConfigOp(new ConfigEntry("log.retention.ms", "1000"), AlterConfigOp.OpType.SET)))).all()));
            AclBinding deny = new AclBinding(new ResourcePattern(ResourceType.GROUP, denied, PatternType.LITERAL),
                    new AccessControlEntry("User:" + user, "*", AclOperation.ALTER_CONFIGS, AclPermissionType.DENY));
            AclBinding denyDescribe = new AclBinding(new ResourcePattern(ResourceType.GROUP, denied, PatternType.LITERAL),
                    new AccessControlEntry("User:" + user, "*", AclOperation.DESCRIBE_CONFIGS, AclPermissionType.DENY));
            step("DENY alter/describe configs on group " + denied + " for the user");
            get(a.createAcls(List.of(deny, denyDescribe)).all());
            try {
                eventually("the deny in force", () -> {
                    try {
                        get(u.incrementalAlterConfigs(Map.of(deniedRes, List.of(new AlterConfigOp(
                                new ConfigEntry("consumer.session.timeout.ms", "50000"), AlterConfigOp.OpType.SET)))).all());
                        return null;
                    } catch (Exception e) {
                        return unwrap(e) instanceof GroupAuthorizationException ? true : null;
                    }
                });
                expectThrows(GroupAuthorizationException.class, () -> get(u.describeConfigs(List.of(deniedRes)).all()));
                step("the user may still configure other groups (ALL on groups)");
                need(get(u.describeConfigs(List.of(groupRes)).all()).get(groupRes).get("consumer.session.timeout.ms") != null,
                        "user describe of " + group);
            } finally {
                get(a.deleteAcls(List.of(deny.toFilter(), denyDescribe.toFilter())).all());
            }
            return "broker " + node.idString() + ": " + bc.entries().size() + " entries (" + sensitive.size()
                    + " sensitive, null), log.retention.ms dynamic default followed by a topic, per-broker message.max.bytes,"
                    + " num.partitions refused; group " + group + ": " + gc.entries().size() + " configs, session "
                    + sessionDefault + " -> 50000 (GROUP_CONFIG), bounds; CLUSTER/GROUP_AUTHORIZATION_FAILED";
        }
    }

    static String adminAcls() throws Exception {
        String bob = "User:java-bob";
        String denied = "java-acl-denied";
        try (Admin a = superAdmin(); Admin u = userAdmin()) {
            createTopic(a, denied, 1, Map.of());
            AclBinding readPrefix = new AclBinding(new ResourcePattern(ResourceType.TOPIC, "java-acl-", PatternType.PREFIXED),
                    new AccessControlEntry(bob, "*", AclOperation.READ, AclPermissionType.ALLOW));
            AclBinding readGroup = new AclBinding(new ResourcePattern(ResourceType.GROUP, "java-acl-g", PatternType.LITERAL),
                    new AccessControlEntry(bob, "*", AclOperation.READ, AclPermissionType.ALLOW));
            step("createAcls (super user)");
            get(a.createAcls(List.of(readPrefix, readGroup)).all());
            AclBindingFilter bobs = new AclBindingFilter(ResourcePatternFilter.ANY,
                    new AccessControlEntryFilter(bob, null, AclOperation.ANY, AclPermissionType.ANY));
            step("describeAcls finds both");
            Collection<AclBinding> found = eventually("both bindings", () -> unchecked(() -> {
                Collection<AclBinding> f = get(a.describeAcls(bobs).values());
                return f.size() == 2 ? f : null;
            }));
            need(new HashSet<>(found).equals(Set.of(readPrefix, readGroup)), "described " + found);
            step("describeAcls with a MATCH filter for topic java-acl-x");
            Collection<AclBinding> match = get(a.describeAcls(new AclBindingFilter(
                    new ResourcePatternFilter(ResourceType.TOPIC, "java-acl-x", PatternType.MATCH),
                    new AccessControlEntryFilter(bob, null, AclOperation.ANY, AclPermissionType.ANY))).values());
            need(match.size() == 1 && match.contains(readPrefix), "MATCH found " + match);
            step("deleteAcls the topic rule");
            Collection<AclBinding> gone = get(a.deleteAcls(List.of(readPrefix.toFilter())).all());
            need(gone.size() == 1 && gone.contains(readPrefix), "deleted " + gone);
            // Kafka applies ACL changes through its metadata log: a broker
            // may answer describeAcls before it applied the delete.
            eventually("one rule of bob's left", () -> unchecked(() ->
                    get(a.describeAcls(bobs).values()).size() == 1 ? true : null));
            get(a.deleteAcls(List.of(bobs)).all());
            eventually("none of bob's rules left", () -> unchecked(() ->
                    get(a.describeAcls(bobs).values()).isEmpty() ? true : null));

            step("a DENY rule takes effect: the user cannot write " + denied);
            AclBinding deny = new AclBinding(new ResourcePattern(ResourceType.TOPIC, denied, PatternType.LITERAL),
                    new AccessControlEntry("User:" + user, "*", AclOperation.WRITE, AclPermissionType.DENY));
            get(a.createAcls(List.of(deny)).all());
            try (KafkaProducer<String, String> p = producer(userProps(), "enable.idempotence", "false", "retries", "0")) {
                eventually("the deny in force", () -> {
                    try {
                        p.send(new ProducerRecord<>(denied, "k", "v")).get(15, TimeUnit.SECONDS);
                        return null;
                    } catch (Exception e) {
                        return unwrap(e) instanceof TopicAuthorizationException ? true : null;
                    }
                });
            }
            step("deleteAcls the deny: the user writes again");
            get(a.deleteAcls(List.of(deny.toFilter())).all());
            try (KafkaProducer<String, String> p = producer(userProps(), "enable.idempotence", "false", "retries", "0")) {
                eventually("the deny lifted", () -> {
                    try {
                        p.send(new ProducerRecord<>(denied, "k", "v")).get(15, TimeUnit.SECONDS);
                        return true;
                    } catch (Exception e) {
                        return null;
                    }
                });
            }

            step("a user without ALTER on the cluster: ClusterAuthorizationException");
            expectThrows(ClusterAuthorizationException.class, () -> get(u.createAcls(List.of(readGroup)).all()));
            expectThrows(ClusterAuthorizationException.class, () -> get(u.deleteAcls(List.of(bobs)).all()));
            expectThrows(ClusterAuthorizationException.class, () -> get(u.describeAcls(bobs).values()));
        }
        return "create/describe (ANY, MATCH)/delete; a DENY takes effect and is lifted; non-super user refused";
    }

    static String adminScramCredentials() throws Exception {
        String dave = "java-dave";
        String davePw = "dave-Java-Secret-4";
        try (Admin a = superAdmin(); Admin u = userAdmin()) {
            step("describeUserScramCredentials (all)");
            Map<String, UserScramCredentialsDescription> all = get(a.describeUserScramCredentials().all());
            need(all.containsKey(adminUser) && all.containsKey(user), "users " + all.keySet());
            // Portcullis' `user add` makes a SCRAM-SHA-256 credential too: the
            // user's SCRAM-SHA-512 one is what the checks log in with.
            List<ScramCredentialInfo> infos = all.get(user).credentialInfos();
            need(infos.stream().anyMatch(i -> i.mechanism() == ScramMechanism.SCRAM_SHA_512 && i.iterations() >= 4096),
                    "user's credentials " + infos);
            step("describe a missing user: ResourceNotFoundException");
            // users() leaves a missing user out; description() fails.
            List<String> described = get(a.describeUserScramCredentials(List.of("java-nobody", user)).users());
            need(described.equals(List.of(user)), "describe [java-nobody, " + user + "].users(): " + described);
            expectThrows(ResourceNotFoundException.class,
                    () -> get(a.describeUserScramCredentials(List.of("java-nobody")).description("java-nobody")));
            step("alterUserScramCredentials: upsert " + dave + " (8192 iterations)");
            get(a.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(dave,
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), davePw))).all());
            UserScramCredentialsDescription d = get(a.describeUserScramCredentials(List.of(dave)).description(dave));
            need(d.credentialInfos().size() == 1 && d.credentialInfos().get(0).iterations() == 8192,
                    "dave " + d.credentialInfos());
            step(dave + " logs in");
            eventually(dave + "'s login", () -> unchecked(() -> listTopics(as(dave, davePw))));
            step("delete " + dave + "; the login is refused");
            get(a.alterUserScramCredentials(List.of(new UserScramCredentialDeletion(dave, ScramMechanism.SCRAM_SHA_512)))
                    .all());
            expectThrows(ResourceNotFoundException.class,
                    () -> get(a.describeUserScramCredentials(List.of(dave)).description(dave)));
            eventually(dave + " refused", () -> {
                try {
                    listTopics(as(dave, davePw));
                    return null;
                } catch (Exception e) {
                    return unwrap(e) instanceof SaslAuthenticationException ? true : null;
                }
            });
            step("a non-super user: ClusterAuthorizationException");
            expectThrows(ClusterAuthorizationException.class, () -> get(u.describeUserScramCredentials().all()));
            expectThrows(ClusterAuthorizationException.class,
                    () -> get(u.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion(dave,
                            new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), davePw))).all()));
        }
        return "describe all/missing, upsert -> login, delete -> login refused, non-super user refused";
    }

    @SuppressWarnings("removal") // listConsumerGroups: what Kafka's tools still call
    static String adminConsumerGroups() throws Exception {
        String topic = "java-groups";
        String group = "java-groups-g";
        try (Admin a = superAdmin()) {
            createTopic(a, topic, 3, Map.of());
            try (KafkaProducer<String, String> p = producer(userProps())) {
                step("produce 30");
                produce(p, topic, null, "", 0, 30);
            }
            step("a group reads and commits, then leaves");
            Set<TopicPartition> tps;
            try (KafkaConsumer<String, String> c = consumer(userProps(), "group.id", group)) {
                c.subscribe(List.of(topic));
                List<ConsumerRecord<String, String>> got = poll(c, 30);
                need(got.size() == 30, "read " + got.size());
                c.commitSync();
                tps = c.assignment();
                step("describeConsumerGroups while it is a member");
                ConsumerGroupDescription d = describeGroup(a, group);
                need(d.groupState() == GroupState.STABLE && d.members().size() == 1, "state " + d.groupState()
                        + " members " + d.members());
                MemberDescription m = d.members().iterator().next();
                need(m.assignment().topicPartitions().equals(tps), "member assignment " + m.assignment());
                need(d.coordinator() != null && !d.coordinator().isEmpty(), "coordinator " + d.coordinator());
            }
            Map<TopicPartition, Long> end;
            try (KafkaConsumer<String, String> c = consumer(userProps())) {
                end = c.endOffsets(tps);
            }
            step("listGroups / listConsumerGroups");
            Collection<GroupListing> listed = get(a.listGroups(ListGroupsOptions.forConsumerGroups()).all());
            need(listed.stream().anyMatch(g -> g.groupId().equals(group)), "listGroups " + listed);
            Collection<org.apache.kafka.clients.admin.ConsumerGroupListing> old = get(a.listConsumerGroups().all());
            need(old.stream().anyMatch(g -> g.groupId().equals(group)
                    && g.groupState().equals(Optional.of(GroupState.EMPTY))), "listConsumerGroups " + old);
            step("describeConsumerGroups: empty");
            ConsumerGroupDescription d = describeGroup(a, group);
            need(d.groupState() == GroupState.EMPTY && d.members().isEmpty(), "after leaving: " + d);
            step("listConsumerGroupOffsets == end offsets");
            Map<TopicPartition, OffsetAndMetadata> offs = get(a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            need(offs.keySet().equals(tps), "offsets for " + offs.keySet());
            for (TopicPartition tp : tps) {
                need(offs.get(tp).offset() == end.get(tp), "offset " + tp + " " + offs.get(tp) + " end " + end.get(tp));
            }
            TopicPartition p0 = new TopicPartition(topic, 0);
            TopicPartition p1 = new TopicPartition(topic, 1);
            step("alterConsumerGroupOffsets " + p0 + " -> 2");
            get(a.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(2, "reset by java"))).all());
            offs = get(a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            need(offs.get(p0).offset() == 2 && "reset by java".equals(offs.get(p0).metadata()), "after alter: " + offs.get(p0));
            step("a consumer resumes from the altered offset");
            try (KafkaConsumer<String, String> c = consumer(userProps(), "group.id", group)) {
                c.assign(List.of(p0));
                List<ConsumerRecord<String, String>> got = poll(c, (int) (end.get(p0) - 2));
                need(!got.isEmpty() && got.get(0).offset() == 2 && got.size() == end.get(p0) - 2,
                        "resumed at " + (got.isEmpty() ? "nothing" : got.get(0).offset()) + ", " + got.size() + " records");
            }
            step("deleteConsumerGroupOffsets " + p1);
            get(a.deleteConsumerGroupOffsets(group, Set.of(p1)).all());
            offs = get(a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            need(!offs.containsKey(p1) && offs.containsKey(p0), "after deleteConsumerGroupOffsets: " + offs.keySet());
            step("deleteConsumerGroups");
            get(a.deleteConsumerGroups(List.of(group)).all());
            Collection<GroupListing> after = get(a.listGroups(ListGroupsOptions.forConsumerGroups()).all());
            need(after.stream().noneMatch(g -> g.groupId().equals(group)), "still listed: " + after);
            offs = get(a.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
            need(offs.isEmpty(), "offsets after deleting the group: " + offs);
        }
        return "list (listGroups, listConsumerGroups), describe (stable, empty), offsets list/alter/delete, group delete";
    }

    static String adminDescribeCluster() throws Exception {
        try (Admin a = superAdmin()) {
            step("describeCluster");
            DescribeClusterResult r = a.describeCluster();
            String id = get(r.clusterId());
            Collection<Node> nodes = get(r.nodes());
            Node controller = get(r.controller());
            need(id != null && !id.isEmpty(), "cluster id " + id);
            need(!nodes.isEmpty(), "no nodes");
            Set<String> addrs = nodes.stream().map(n -> n.host() + ":" + n.port()).collect(Collectors.toSet());
            // The bootstrap address need not be a node (a gateway's is not:
            // each upstream broker has its own port), but every node
            // address must be one a client can use: each, as the only
            // bootstrap address, reaches the same cluster.
            for (String addr : addrs) {
                step("describeCluster with bootstrap.servers=" + addr);
                Properties p = adminProps();
                p.put("bootstrap.servers", addr);
                try (Admin n = admin(p)) {
                    String other = get(n.describeCluster().clusterId());
                    need(id.equals(other), "node " + addr + " answers cluster id " + other + ", not " + id);
                }
            }
            need(controller != null && !controller.isEmpty(), "controller " + controller);
            return "cluster " + id + ", nodes " + addrs + ", controller " + controller.id();
        }
    }

    /**
     * includeAuthorizedOperations: what the caller may do to the cluster, a
     * topic, a group. The user gets DESCRIBE on the cluster for the check,
     * removed at the end.
     */
    static String adminAuthorizedOperations() throws Exception {
        String topic = "java-authz-ops";
        String group = "java-authz-g";
        AclBinding describeCluster = new AclBinding(
                new ResourcePattern(ResourceType.CLUSTER, "kafka-cluster", PatternType.LITERAL),
                new AccessControlEntry("User:" + user, "*", AclOperation.DESCRIBE, AclPermissionType.ALLOW));
        try (Admin a = superAdmin(); Admin u = userAdmin()) {
            createTopic(a, topic, 1, Map.of());
            step("describeCluster(includeAuthorizedOperations) as the super user");
            Set<AclOperation> cluster = get(a.describeCluster(new DescribeClusterOptions()
                    .includeAuthorizedOperations(true)).authorizedOperations());
            need(Set.of(AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
                    AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER, AclOperation.DESCRIBE)
                    .equals(cluster), "super user's cluster operations " + cluster);
            step("without includeAuthorizedOperations: not computed");
            need(get(a.describeCluster().authorizedOperations()) == null, "cluster operations not asked for");
            get(a.createAcls(List.of(describeCluster)).all());
            try {
                step("describeCluster(includeAuthorizedOperations) as the user with DESCRIBE on the cluster");
                Set<AclOperation> userCluster = eventually("the user's DESCRIBE on the cluster", () -> unchecked(() ->
                        get(u.describeCluster(new DescribeClusterOptions().includeAuthorizedOperations(true))
                                .authorizedOperations())));
                need(Set.of(AclOperation.DESCRIBE).equals(userCluster), "user's cluster operations " + userCluster);
                step("describeTopics(includeAuthorizedOperations) as the user (all on topics)");
                TopicDescription d = get(u.describeTopics(List.of(topic),
                        new DescribeTopicsOptions().includeAuthorizedOperations(true)).allTopicNames()).get(topic);
                need(Set.of(AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DESCRIBE,
                        AclOperation.DELETE, AclOperation.ALTER, AclOperation.DESCRIBE_CONFIGS,
                        AclOperation.ALTER_CONFIGS).equals(d.authorizedOperations()),
                        "topic operations " + d.authorizedOperations());
                step("describeConsumerGroups(includeAuthorizedOperations) as the user (all on groups)");
                get(u.alterConsumerGroupOffsets(group, Map.of(new TopicPartition(topic, 0), new OffsetAndMetadata(0)))
                        .all());
                ConsumerGroupDescription g = get(u.describeConsumerGroups(List.of(group),
                        new org.apache.kafka.clients.admin.DescribeConsumerGroupsOptions()
                                .includeAuthorizedOperations(true)).all()).get(group);
                // Kafka 4: groups have configs (KIP-848), so their operations too.
                need(Set.of(AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE, AclOperation.DESCRIBE_CONFIGS,
                        AclOperation.ALTER_CONFIGS).equals(g.authorizedOperations()),
                        "group operations " + g.authorizedOperations());
                return "super user's cluster " + cluster + "; user's cluster " + userCluster + ", topic "
                        + d.authorizedOperations() + ", group " + g.authorizedOperations();
            } finally {
                get(a.deleteAcls(List.of(describeCluster.toFilter())).all());
            }
        }
    }

    static String adminDeleteRecordsListOffsets() throws Exception {
        String topic = "java-offsets";
        TopicPartition tp = new TopicPartition(topic, 0);
        try (Admin a = superAdmin()) {
            createTopic(a, topic, 1, Map.of());
        }
        long base = System.currentTimeMillis() - 100_000;
        step("produce 10 records with timestamps base + i s");
        try (KafkaProducer<String, String> p = producer(userProps())) {
            List<Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                fs.add(p.send(new ProducerRecord<>(topic, 0, base + i * 1000L, "k" + i, "v" + i)));
            }
            p.flush();
            for (Future<RecordMetadata> f : fs) {
                get(f);
            }
        }
        try (Admin u = userAdmin()) {
            step("listOffsets earliest/latest/forTimestamp/maxTimestamp");
            Map<String, OffsetSpec> specs = new LinkedHashMap<>();
            specs.put("earliest", OffsetSpec.earliest());
            specs.put("latest", OffsetSpec.latest());
            specs.put("ts+3.5s", OffsetSpec.forTimestamp(base + 3500));
            specs.put("ts+20s", OffsetSpec.forTimestamp(base + 20_000));
            specs.put("max", OffsetSpec.maxTimestamp());
            Map<String, ListOffsetsResultInfo> got = new LinkedHashMap<>();
            for (Map.Entry<String, OffsetSpec> e : specs.entrySet()) {
                got.put(e.getKey(), get(u.listOffsets(Map.of(tp, e.getValue())).partitionResult(tp)));
            }
            String seen = got.entrySet().stream().map(e -> e.getKey() + "=" + e.getValue().offset() + "@"
                    + (e.getValue().timestamp() < 0 ? "-1" : "base+" + (e.getValue().timestamp() - base)))
                    .collect(Collectors.joining(" "));
            need(got.get("earliest").offset() == 0 && got.get("latest").offset() == 10, seen);
            need(got.get("ts+3.5s").offset() == 4 && got.get("ts+3.5s").timestamp() == base + 4000, seen);
            need(got.get("ts+20s").offset() == -1, seen);
            need(got.get("max").offset() == 9 && got.get("max").timestamp() == base + 9000, seen);

            step("deleteRecords before offset 3");
            long low = get(u.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(3))).lowWatermarks().get(tp))
                    .lowWatermark();
            need(low == 3, "low watermark " + low);
            long earliest = get(u.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp)).offset();
            need(earliest == 3, "earliest after deleteRecords " + earliest);
            ListOffsetsResultInfo first = get(u.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(base))).partitionResult(tp));
            need(first.offset() == 3 && first.timestamp() == base + 3000, "forTimestamp(base) after delete: "
                    + first.offset() + "@base+" + (first.timestamp() - base) + ", want 3@base+3000");
            step("a consumer from the beginning starts at 3");
            try (KafkaConsumer<String, String> c = consumer(userProps())) {
                c.assign(List.of(tp));
                c.seekToBeginning(List.of(tp));
                List<ConsumerRecord<String, String>> rs = readToEnd(c, List.of(tp));
                need(rs.size() == 7 && rs.get(0).offset() == 3 && rs.get(0).value().equals("v3")
                        && rs.get(0).timestamp() == base + 3000, "read " + rs.size() + " from "
                        + (rs.isEmpty() ? "-" : rs.get(0).offset()));
            }
            step("deleteRecords past the end: OffsetOutOfRangeException");
            expectThrows(OffsetOutOfRangeException.class,
                    () -> get(u.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(20))).all()));
            step("deleteRecords up to the high watermark (-1)");
            long all = get(u.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(-1))).lowWatermarks().get(tp))
                    .lowWatermark();
            need(all == 10, "low watermark after deleting all " + all);
            return seen + "; deleteRecords -> 3, forTimestamp/consumer follow, past end refused, -1 -> 10";
        }
    }

    // ------------------------------------------------------------------
    // Probes: behaviours where a broker may deliberately differ from Kafka
    // ------------------------------------------------------------------

    /**
     * Kafka: a compacted topic is created and described as such; it takes
     * keyed records and refuses a record without a key (a compacted log
     * could never replace or remove it).
     */
    static String probeCompactTopic() throws Exception {
        String topic = "java-compact";
        try (Admin a = superAdmin()) {
            createTopic(a, topic, 1, Map.of("cleanup.policy", "compact"));
            step("describeConfigs cleanup.policy");
            ConfigEntry e = configEntry(a, new ConfigResource(ConfigResource.Type.TOPIC, topic), "cleanup.policy");
            need(e != null && "compact".equals(e.value())
                    && e.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "cleanup.policy described as " + e);
        }
        try (KafkaProducer<String, String> p = producer(adminProps())) {
            step("produce keyed records");
            produce(p, topic, 0, "c", 0, 3);
            step("produce a record without a key");
            Throwable t = expectThrows(InvalidRecordException.class,
                    () -> get(p.send(new ProducerRecord<>(topic, 0, null, "no key"))));
            return "compacted topic created, described compact (DYNAMIC_TOPIC_CONFIG), keyed records taken, "
                    + "a keyless one refused: " + t.getClass().getSimpleName();
        }
    }

    /** Kafka: a SCRAM-SHA-256 credential is stored (the broker may still only enable SHA-512 logins). */
    static String probeScramSha256() throws Exception {
        try (Admin a = superAdmin()) {
            step("upsert a SCRAM-SHA-256 credential");
            get(a.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("java-sha256",
                    new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), "sha256-Secret-5"))).all());
        }
        return "SCRAM-SHA-256 credential stored";
    }

    /**
     * Kafka: Admin.describeTopics works for any user who may describe the
     * topic. The Java Admin (3.7+) sends DescribeCluster first, for the
     * brokers, so this fails where DescribeCluster needs a cluster rule.
     */
    static String probeDescribeTopicsAsUser() throws Exception {
        try (Admin a = superAdmin(); Admin u = userAdmin()) {
            createTopic(a, "java-describe-user", 1, Map.of());
            step("describeTopics as the user (all on topics, no rule on the cluster)");
            TopicDescription d = get(u.describeTopics(List.of("java-describe-user")).allTopicNames())
                    .get("java-describe-user");
            return d.partitions().size() + " partition(s)";
        }
    }

    /** Kafka: any authenticated client may DescribeCluster; no ACL is checked. */
    static String probeDescribeClusterAsUser() throws Exception {
        try (Admin u = userAdmin()) {
            step("describeCluster as the user (no rule on the cluster)");
            Collection<Node> nodes = get(u.describeCluster().nodes());
            return nodes.size() + " nodes";
        }
    }

}
