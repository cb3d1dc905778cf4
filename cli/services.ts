/**
 * The enrichment services a member process offers its processor: those its topology declares (`services` in
 * defineTopology), built once at start from what the runtime provides (ServiceDeps). A service that asks for
 * `deps.llm()` gets the runtime's generic LLM service, which answers every request (its caller's fallback when it
 * must); budgets are fleet-wide (every member of the application reserves from the same Redis buckets) and every
 * call's audit row goes to ClickHouse `llm_calls`, flushed after each batch of requests (docs/llm.md).
 */
import { context } from '@opentelemetry/api';
import type { Config } from '../runtime/config/index.ts';
import type { EnrichmentService } from '../runtime/engine/runner.ts';
import { AgentStreamsError, ErrorCode } from '../runtime/errors.ts';
import { createLlm, RedisBudgetStore, type Llm, type LlmCallRecord } from '../runtime/llm/index.ts';
import { lineLog, processLogger } from '../runtime/observability/log.ts';
import type { Metrics } from '../runtime/observability/metrics.ts';
import type { Topology } from '../runtime/topology/topology.ts';
import type { ServiceDeps } from '../runtime/topology/services.ts';
import { ClickHouseWriter } from '../sinks/clickhouse/writer.ts';
import { openClickHouse } from '../sinks/clickhouse/client.ts';

export interface MemberServices {
  services: Record<string, EnrichmentService>;
  close(): Promise<void>;
}

/** The services processor `processor` of `topology` asks (none for a processor that does not enrich). */
export function servicesOf(topology: Topology, processor: string): string[] {
  const spec = topology.processors[processor];
  return spec?.kind === 'process' && spec.enrich ? [spec.enrich.service] : [];
}

/**
 * Builds the named services from the topology's declarations. A name the topology does not declare is an error
 * that says how to declare it.
 */
export async function memberServices(
  config: Config,
  topology: Topology,
  names: readonly string[],
  log: (event: string, fields?: Record<string, unknown>) => void,
  metrics?: Metrics,
): Promise<MemberServices> {
  const declared = topology.services ?? {};
  const missing = names.filter((name) => declared[name] === undefined);
  if (missing.length > 0) {
    const has = Object.keys(declared);
    const what = `service${missing.length > 1 ? 's' : ''} ${missing.map((n) => `"${n}"`).join(', ')}`;
    throw new AgentStreamsError(
      ErrorCode.TOPOLOGY_INVALID,
      `topology ${topology.application} does not declare the enrichment ${what} that its processors ask for (enrich.service); ` +
        `add services: { '${missing[0]}': (deps) => … } to its defineTopology()${has.length > 0 ? ` (it declares ${has.join(', ')})` : ''}`,
    );
  }
  if (names.length === 0) return { services: {}, async close() {} };

  // Opened only when a service asks for an LLM: a topology whose services make no LLM calls needs no llm_calls table.
  let audit: ClickHouseWriter | undefined;
  const pendingAudit: LlmCallRecord[] = [];
  // The LLM service and the budget store speak in sentences: each one is a line with event `llm`, a warning when it reports trouble.
  const llmLog = lineLog(processLogger(), 'llm');
  let budgetStore: RedisBudgetStore | undefined;
  const llms = new Map<string, Llm>();

  const deps: ServiceDeps = {
    config,
    application: topology.application,
    log: (event, fields, trace) => (trace ? context.with(trace, () => log(event, fields)) : log(event, fields)),
    ...(metrics ? { metrics } : {}),
    llm({ apiKey = config.anthropic.apiKey, models = [] } = {}) {
      const known = llms.get(apiKey);
      if (known) {
        const unpriced = models.filter((m) => known.priceOf(m) === undefined);
        if (unpriced.length > 0)
          throw new AgentStreamsError(
            ErrorCode.LLM_OPTIONS_INVALID,
            `No price for model ${unpriced.join(', ')}: add it to the LLM service's prices.`,
          );
        return known;
      }
      // Connects on first use: a member in rules-only mode (no API key) never touches it.
      budgetStore ??= new RedisBudgetStore({ url: config.redis.url, application: topology.application, log: llmLog });
      const llm = createLlm({
        apiKey,
        baseUrl: config.anthropic.baseUrl,
        models,
        budgets: { default: { tokensPerHour: config.llm.tokensPerHour } },
        budgetStore,
        concurrency: config.llm.concurrency,
        timeoutMs: config.llm.timeoutMs,
        cacheTtl: config.llm.cacheTtl,
        onAudit: (record: LlmCallRecord) =>
          audit ? audit.write('llm_calls', [record]) : void pendingAudit.push(record),
        ...(metrics ? { metrics } : {}),
        log: llmLog,
      });
      llms.set(apiKey, llm);
      return llm;
    },
  };

  const built: Record<string, EnrichmentService> = {};
  for (const name of names) built[name] = await declared[name]!(deps);
  const client = llms.size > 0 ? openClickHouse(config, { role: 'sink' }) : undefined;
  if (client) {
    audit = await ClickHouseWriter.open({ client, tables: ['llm_calls'], log });
    if (pendingAudit.length > 0) audit.write('llm_calls', pendingAudit.splice(0));
  }

  // Each batch's audit rows are in ClickHouse before its answers are used.
  const services = Object.fromEntries(
    Object.entries(built).map(([name, service]) => [
      name,
      (async (requests, trace) => {
        const answers = await service(requests, trace);
        await audit?.flush();
        return answers;
      }) satisfies EnrichmentService,
    ]),
  );
  return {
    services,
    async close() {
      for (const llm of llms.values()) llm.close();
      await budgetStore?.close();
      await audit?.close();
      await client?.close();
    },
  };
}
