/**
 * `agent-streams lag [group]`: consumer lag per partition, like kafka-consumer-groups --describe: the group's
 * committed offset, the partition's end offset, and the difference. Without a group it shows every group of an
 * application (groups are named `<application>.<processor>`; --application, default the fleet's `market`). A
 * partition the group has never committed shows committed "-" and, as lag, every record it holds (a new group starts
 * at the earliest offset).
 */
import { parseArgs } from 'node:util';
import { AssignerProtocol } from 'kafkajs';
import type { KafkaAdmin } from '../../runtime/kafka/port.ts';
import { loadConfig } from '../../runtime/config/index.ts';
import { AgentStreamsError, ErrorCode } from '../../runtime/errors.ts';
import { expectPositionals } from '../args.ts';
import { checkFormat, dataFormats, formatOption, formatRows } from '../format.ts';
import { cliKafka } from '../kafka.ts';
import type { Command } from '../main.ts';

export interface LagRow {
  group: string;
  topic: string;
  partition: number;
  committed: number | null;
  end: number;
  lag: number;
  /** The member that owns the partition now (client id), if the group has members. */
  member: string;
}

const options = { application: { type: 'string', short: 'a' }, format: formatOption } as const;

/** The fleet's default application (topologies/market-signals.ts, AS_FLEET_APP). */
const defaultApplication = (): string => process.env.AS_FLEET_APP ?? 'market';

async function groupLag(admin: KafkaAdmin, groupId: string, known: boolean): Promise<LagRow[]> {
  const [description] = (await admin.describeGroups([groupId])).groups;
  const owners = new Map<string, string>();
  for (const member of description?.members ?? []) {
    const assignment =
      member.memberAssignment.length > 0 ? AssignerProtocol.MemberAssignment.decode(member.memberAssignment) : null;
    for (const [topic, partitions] of Object.entries(assignment?.assignment ?? {}))
      for (const p of partitions) owners.set(`${topic}:${p}`, member.clientId);
  }
  const committed = await admin.fetchOffsets({ groupId });
  const topics = new Set([
    ...committed.map((t) => t.topic),
    ...[...owners.keys()].map((k) => k.slice(0, k.lastIndexOf(':'))),
  ]);
  if (topics.size === 0 && !known) {
    throw new AgentStreamsError(
      ErrorCode.GROUP_NOT_FOUND,
      `consumer group ${groupId} has no members and no committed offsets: check its name (groups are <application>.<processor>; \`agent-streams lag --application APP\` lists an application's)`,
    );
  }
  const rows: LagRow[] = [];
  for (const topic of [...topics].sort()) {
    const ends = await admin.fetchTopicOffsets(topic);
    const offsets = committed.find((t) => t.topic === topic)?.partitions ?? [];
    for (const { partition, high, low } of ends.sort((a, b) => a.partition - b.partition)) {
      const at = Number(offsets.find((o) => o.partition === partition)?.offset ?? -1);
      const end = Number(high);
      rows.push({
        group: groupId,
        topic,
        partition,
        committed: at >= 0 ? at : null,
        end,
        lag: Math.max(0, end - (at >= 0 ? at : Number(low))),
        member: owners.get(`${topic}:${partition}`) ?? '',
      });
    }
  }
  return rows;
}

export const lagCommand: Command = {
  summary: 'Consumer lag per partition (committed, end, lag) of a group, or of every group of an application',
  usage: 'lag [group] [--application market] [--format table|json]',
  options,
  async run(args) {
    const { positionals, values } = parseArgs({ args, allowPositionals: true, options });
    const [group] = expectPositionals('lag', positionals, ['[group]']);
    const format = checkFormat(values.format, dataFormats);
    const config = loadConfig();
    const admin = cliKafka(config, 'lag').admin();
    await admin.connect();
    let rows: LagRow[] = [];
    try {
      const listed = (await admin.listGroups()).groups.map((g) => g.groupId);
      if (group !== undefined) {
        rows = await groupLag(admin, group, listed.includes(group));
      } else {
        const application = values.application ?? defaultApplication();
        const groups = listed.filter((g) => g.startsWith(`${application}.`)).sort();
        if (groups.length === 0) {
          throw new AgentStreamsError(
            ErrorCode.GROUP_NOT_FOUND,
            `application "${application}" has no consumer groups on ${config.kafka.brokers.join(',')}: its members have not run there yet, or pass --application NAME (the topology's application)`,
          );
        }
        for (const g of groups) rows.push(...(await groupLag(admin, g, true)));
      }
    } finally {
      await admin.disconnect();
    }
    if (format === 'json') {
      console.log(JSON.stringify(rows, null, 2));
      return 0;
    }
    console.log(
      formatRows(
        rows.map((r) => ({ ...r, committed: r.committed ?? '-' })),
        'table',
      ),
    );
    const total = rows.reduce((n, r) => n + r.lag, 0);
    console.log(
      `total lag ${total} over ${rows.length} partitions of ${new Set(rows.map((r) => r.group)).size} groups`,
    );
    return 0;
  },
};
