"""The Quix Streams side of bench/runtime.ts (see BENCHMARKS.md, "Peers").

    python peer.py router   --bootstrap H:P --group G --input T --routes SCHEMAID:TOPIC,... [--commit-interval S]
    python peer.py windowed --bootstrap H:P --group G --input T --output T [--commit-interval S]

router: each record goes to the topic of its Confluent schema id (bytes 1-4 of the value), no Avro decoding.
windowed: a count per key in tumbling one-minute windows (grace 10 s), on the event time read from the Avro value
(agentstreams.test.Event: key string, eventTime long), emitted once when the window closes (.final()).
Both exactly-once. Prints "FIRST <epoch ms>" when the first input record has been processed. Stops on SIGTERM.
"""

import argparse
import json
import logging
import sys
import time

from quixstreams import Application


def schema_id(value: bytes) -> int:
    """Confluent framing: magic byte 0, then the schema id as a big-endian int."""
    if value is None or len(value) < 5 or value[0] != 0:
        return -1
    return int.from_bytes(value[1:5], "big")


def read_long(b: bytes, at: int) -> tuple[int, int]:
    """Avro long: zig-zag varint. Returns (value, next position)."""
    n = 0
    shift = 0
    while True:
        x = b[at]
        at += 1
        n |= (x & 0x7F) << shift
        if not x & 0x80:
            break
        shift += 7
    return (n >> 1) ^ -(n & 1), at


def event_time(value, headers, timestamp, timestamp_type) -> int:
    """eventTime of an agentstreams.test.Event: after the 5-byte header, skip the key string."""
    key_length, at = read_long(value, 5)
    t, _ = read_long(value, at + key_length)
    return t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["router", "windowed"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--routes", help="router: SCHEMAID:TOPIC,...")
    parser.add_argument("--output", help="windowed: output topic")
    parser.add_argument("--commit-interval", type=float, default=5.0, help="seconds between checkpoints (Quix default 5)")
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args()
    if args.commit_interval <= 0:
        parser.error("--commit-interval must be > 0")

    first = [False]

    def on_processed(topic: str, partition: int, offset: int) -> None:
        if not first[0]:
            first[0] = True
            print(f"FIRST {int(time.time() * 1000)}", flush=True)

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        on_message_processed=on_processed,
        loglevel="WARNING",
    )

    if args.mode == "router":
        if not args.routes:
            parser.error("router needs --routes SCHEMAID:TOPIC,...")
        routes = {}
        for route in args.routes.split(","):
            sid, sep, name = route.partition(":")
            if not sep or not sid.isdigit() or not name:
                parser.error(f'route "{route}" is not SCHEMAID:TOPIC')
            routes[int(sid)] = app.topic(name, key_serializer="bytes", value_serializer="bytes")
        source = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
        sdf = app.dataframe(source)

        def select(value, key, timestamp, headers):
            topic = routes.get(schema_id(value))
            if topic is None:
                raise ValueError(f"no route for schema id {schema_id(value)}")
            return topic

        sdf.to_topic(select)
    else:
        if not args.output:
            parser.error("windowed needs --output TOPIC")
        output = app.topic(args.output, key_serializer="str", value_serializer="json")
        source = app.topic(args.input, key_deserializer="str", value_deserializer="bytes", timestamp_extractor=event_time)
        sdf = app.dataframe(source)
        sdf = sdf.tumbling_window(60_000, grace_ms=10_000).count().final()
        sdf = sdf.apply(lambda w: {"start": w["start"], "end": w["end"], "count": w["value"]})
        sdf.to_topic(output)

    app.run()
    return 0


if __name__ == "__main__":
    logging.getLogger("quixstreams").setLevel(logging.WARNING)
    sys.exit(main())
