package agentstreams.bench;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.EmitStrategy;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The Kafka Streams side of bench/runtime.ts. Two topologies, chosen by the first argument:
 *
 * <ul>
 *   <li>{@code router}: each record goes to the topic of its Confluent schema id (bytes 1–4 of the value), as the
 *       engine's router routes by schema id; no Avro decoding.
 *   <li>{@code windowed}: a count per key in tumbling one-minute windows (grace 10 s, as the engine's fixture), on the
 *       event time read from the Avro value ({@code agentstreams.test.Event}: key string, eventTime long), emitted
 *       once when the window closes.
 * </ul>
 *
 * Settings come as {@code name=value} arguments (see {@link #usage}). Prints {@code STATE <state>} on every state
 * change and {@code FIRST <epoch ms>} when the first input record reaches the topology, so that the bench can time
 * from the first record consumed. Stops cleanly on SIGTERM.
 */
public final class PeerApp {
  private static final AtomicBoolean firstSeen = new AtomicBoolean(false);

  private static String usage() {
    return "usage: PeerApp router|windowed bootstrap=HOST:PORT application=ID input=TOPIC state-dir=DIR"
        + " [routes=SCHEMAID:TOPIC,...] [output=TOPIC] [commit-interval-ms=N] [threads=N] [emit=close|update]";
  }

  private static void fail(String message) {
    System.err.println("kstreams peer: " + message + "\n" + usage());
    System.exit(2);
  }

  public static void main(String[] argv) throws InterruptedException {
    if (argv.length < 1 || !(argv[0].equals("router") || argv[0].equals("windowed"))) fail("first argument must be router or windowed");
    String mode = argv[0];
    Map<String, String> opts = new HashMap<>();
    for (int i = 1; i < argv.length; i++) {
      int eq = argv[i].indexOf('=');
      if (eq <= 0) fail("argument \"" + argv[i] + "\" is not name=value");
      opts.put(argv[i].substring(0, eq), argv[i].substring(eq + 1));
    }
    for (String required : new String[] {"bootstrap", "application", "input", "state-dir"}) {
      if (!opts.containsKey(required)) fail("missing " + required + "=");
    }
    for (String name : opts.keySet()) {
      if (!java.util.List.of("bootstrap", "application", "input", "state-dir", "routes", "output", "commit-interval-ms", "threads", "emit").contains(name)) {
        fail("unknown setting " + name);
      }
    }

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, opts.get("application"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, opts.get("bootstrap"));
    props.put(StreamsConfig.STATE_DIR_CONFIG, opts.get("state-dir"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(opts.getOrDefault("threads", "1")));
    // exactly_once_v2's default commit interval is 100 ms; only set when asked.
    if (opts.containsKey("commit-interval-ms")) props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, Long.parseLong(opts.get("commit-interval-ms")));
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    Topology topology;
    if (mode.equals("router")) {
      topology = router(opts, props);
    } else {
      topology = windowed(opts, props);
    }

    KafkaStreams streams = new KafkaStreams(topology, props);
    CountDownLatch stopped = new CountDownLatch(1);
    streams.setStateListener((now, before) -> {
      System.out.println("STATE " + now);
      System.out.flush();
      if (now == KafkaStreams.State.ERROR || now == KafkaStreams.State.NOT_RUNNING) stopped.countDown();
    });
    streams.setUncaughtExceptionHandler(error -> {
      System.err.println("kstreams peer: " + error);
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close(Duration.ofSeconds(20));
      stopped.countDown();
    }));
    streams.start();
    stopped.await();
    System.exit(streams.state() == KafkaStreams.State.ERROR ? 1 : 0);
  }

  private static void markFirst() {
    if (!firstSeen.get() && firstSeen.compareAndSet(false, true)) {
      System.out.println("FIRST " + System.currentTimeMillis());
      System.out.flush();
    }
  }

  /** Confluent framing: magic byte 0, then the schema id as a big-endian int. */
  static int schemaId(byte[] value) {
    if (value == null || value.length < 5 || value[0] != 0) return -1;
    return ((value[1] & 0xff) << 24) | ((value[2] & 0xff) << 16) | ((value[3] & 0xff) << 8) | (value[4] & 0xff);
  }

  private static Topology router(Map<String, String> opts, Properties props) {
    String spec = opts.get("routes");
    if (spec == null || spec.isEmpty()) fail("router needs routes=SCHEMAID:TOPIC,...");
    Map<Integer, String> routes = new HashMap<>();
    for (String route : spec.split(",")) {
      String[] parts = route.split(":", 2);
      if (parts.length != 2) fail("route \"" + route + "\" is not SCHEMAID:TOPIC");
      routes.put(Integer.parseInt(parts[0]), parts[1]);
    }
    StreamsBuilder builder = new StreamsBuilder();
    KStream<byte[], byte[]> input = builder.stream(opts.get("input"), Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()));
    input
        .peek((k, v) -> markFirst())
        .to((key, value, context) -> {
          String topic = routes.get(schemaId(value));
          if (topic == null) {
            throw new IllegalStateException("no route for schema id " + schemaId(value) + " at " + context.topic() + "/" + context.partition() + "@" + context.offset());
          }
          return topic;
        }, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
    return builder.build(props);
  }

  /** Event time of an agentstreams.test.Event: after the 5-byte header, skip the key string and read eventTime. */
  static final class EventTimeExtractor implements TimestampExtractor {
    @Override
    public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
      byte[] v = (byte[]) record.value();
      int[] at = {5};
      long keyLength = readLong(v, at);
      at[0] += (int) keyLength;
      return readLong(v, at);
    }

    /** Avro long: zig-zag varint. */
    private static long readLong(byte[] b, int[] at) {
      long n = 0;
      int shift = 0;
      while (true) {
        int x = b[at[0]++] & 0xff;
        n |= (long) (x & 0x7f) << shift;
        if ((x & 0x80) == 0) break;
        shift += 7;
      }
      return (n >>> 1) ^ -(n & 1);
    }
  }

  private static Topology windowed(Map<String, String> opts, Properties props) {
    String output = opts.get("output");
    if (output == null || output.isEmpty()) fail("windowed needs output=TOPIC");
    String emit = opts.getOrDefault("emit", "close");
    if (!emit.equals("close") && !emit.equals("update")) fail("emit must be close or update");
    if (emit.equals("close")) {
      // Emit-on-close checks for closed windows at most once per this interval (default 1 s of wall clock): with the
      // default, windows closed near the end of the input stay unemitted until a later record arrives.
      props.put("__emit.interval.ms.kstreams.windowed.aggregation__", 0L);
      // No record cache: results go out as they are decided, not when the cache is flushed.
      props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);
    }
    StreamsBuilder builder = new StreamsBuilder();
    var counts = builder
        .stream(opts.get("input"), Consumed.with(Serdes.String(), Serdes.ByteArray()).withTimestampExtractor(new EventTimeExtractor()))
        .peek((k, v) -> markFirst())
        .groupByKey(Grouped.with(Serdes.String(), Serdes.ByteArray()))
        .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), Duration.ofSeconds(10)))
        .emitStrategy(emit.equals("close") ? EmitStrategy.onWindowClose() : EmitStrategy.onWindowUpdate());
    Materialized<String, Long, WindowStore<Bytes, byte[]>> store = Materialized.<String, Long, WindowStore<Bytes, byte[]>>as("counts")
        .withKeySerde(Serdes.String())
        .withValueSerde(Serdes.Long());
    if (emit.equals("close")) store = store.withCachingDisabled();
    counts
        .count(store)
        .toStream()
        .map((windowed, count) -> KeyValue.pair(
            windowed.key(),
            "{\"start\":" + windowed.window().start() + ",\"end\":" + windowed.window().end() + ",\"count\":" + count + "}"))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build(props);
  }
}
