/** `agent-streams/testing`: run a topology's processors without a broker, as Kafka Streams' TopologyTestDriver does. */
export * from './driver.ts';
