// Reads partition 0 of a compacted topic from the log start to its end
// with the Java consumer (Apache Kafka's kafka-clients) over PLAINTEXT.
//
// Usage: CompactedReader.java BOOTSTRAP TOPIC
//
// Prints one line per record, `REC <offset> <key hex> <value hex or ->`, in
// the order the consumer delivered them, then `DONE <records>`. The Rust
// test (tests/compaction.rs) compares them with what it wrote.

import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class CompactedReader {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("enable.auto.commit", "false");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        TopicPartition tp = new TopicPartition(args[1], 0);
        HexFormat hex = HexFormat.of();
        StringBuilder out = new StringBuilder();
        long records = 0;
        // No group: an assigned partition, no commits.
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long end = c.endOffsets(List.of(tp)).get(tp);
            long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
            while (c.position(tp) < end) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException(
                            "at position " + c.position(tp) + " of " + end + " after 90 s");
                }
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) {
                    out.append("REC ").append(r.offset()).append(' ')
                            .append(hex.formatHex(r.key())).append(' ')
                            .append(r.value() == null ? "-" : hex.formatHex(r.value()))
                            .append('\n');
                    records++;
                }
            }
        }
        System.out.print(out);
        System.out.println("DONE " + records);
    }
}
