/**
 * The enrichment services a member process offers its processors: `analysis` (alert analysis, one Messages call
 * per finding) and `digest` (summaries through the Message Batches API). Both come from the runtime's LLM service,
 * which answers every request (rules-only when it must); every call's audit row goes to ClickHouse `llm_calls`.
 * Budgets are fleet-wide: every member of the application reserves from the same Redis buckets (docs/llm.md).
 */
import { context } from '@opentelemetry/api';
import type { Config } from '../runtime/config/index.ts';
import type { EnrichmentService } from '../runtime/engine/runner.ts';
import { createLlm, RedisBudgetStore, type LlmCallRecord } from '../runtime/llm/index.ts';
import { lineLog, processLogger } from '../runtime/observability/log.ts';
import type { createMetrics } from '../runtime/observability/metrics.ts';
import { ClickHouseWriter } from '../sinks/clickhouse/writer.ts';
import { openClickHouse } from '../sinks/clickhouse/client.ts';
import { alertIdOf, type Analysis, type AnalysisRequest } from '../processors/alert-analyst.ts';
import type { DigestAnswer, DigestRequest } from '../processors/digest.ts';

export interface FleetServices {
  services: Record<string, EnrichmentService>;
  close(): Promise<void>;
}

/** `application`: the topology's; budgets are shared by its members and by no other application's. */
export async function fleetServices(
  config: Config,
  application: string,
  log: (event: string, fields?: Record<string, unknown>) => void,
  metrics?: ReturnType<typeof createMetrics>,
): Promise<FleetServices> {
  const client = openClickHouse(config, { role: 'sink' });
  const audit = await ClickHouseWriter.open({ client, tables: ['llm_calls'], log });
  // Connects on first use: a member in rules-only mode (no API key) never touches it.
  // The LLM service and the budget store speak in sentences: each one is a line with event `llm`, a warning when it reports trouble.
  const llmLog = lineLog(processLogger(), 'llm');
  const budgetStore = new RedisBudgetStore({ url: config.redis.url, application, log: llmLog });
  // Each agent type calls with its own key when one is set (AS_ANTHROPIC_API_KEY_ANALYST / _DIGEST), so a key can
  // be revoked, rate-limited and billed per agent type; one service when they are the same key.
  const llmFor = (apiKey: string): ReturnType<typeof createLlm> => createLlm({
    apiKey,
    baseUrl: config.anthropic.baseUrl,
    budgets: { default: { tokensPerHour: config.llm.tokensPerHour } },
    budgetStore,
    concurrency: config.llm.concurrency,
    timeoutMs: config.llm.timeoutMs,
    onAudit: (record: LlmCallRecord) => audit.write('llm_calls', [record]),
    ...(metrics ? { metrics } : {}),
    log: llmLog,
  });
  const analystKey = config.anthropic.analystApiKey || config.anthropic.apiKey;
  const digestKey = config.anthropic.digestApiKey || config.anthropic.apiKey;
  const llm = llmFor(analystKey);
  const digestLlm = digestKey === analystKey ? llm : llmFor(digestKey);
  const analysis: EnrichmentService = async (requests, trace) => {
    const answers = new Map<string, unknown>();
    await Promise.all(
      [...requests].map(async ([offset, raw]) => {
        const { finding, portfolioName } = raw as AnalysisRequest;
        const result = await llm.analyzeFinding(
          { id: finding.findingId, agent: finding.agent, rule: finding.rule, symbol: finding.symbol, severity: finding.severity, evidence: finding.evidence, summary: finding.summary },
          { agent: finding.agent, portfolioName, ...(trace ? { trace: trace(offset) } : {}) },
        );
        // One line per analysed finding, correlated by the finding, the alert it becomes, the input record and (under
        // the record's trace context) its trace.
        const record = trace?.(offset);
        const logAnalysis = (): void => log('llm.analysis', {
          offset,
          findingId: finding.findingId,
          alertId: alertIdOf(finding.findingId),
          agent: finding.agent,
          model: result.model,
          ...(result.reason ? { reason: result.reason } : {}),
          ...(result.modelDisagreed ? { modelDisagreed: true } : {}),
        });
        if (record) context.with(record, logAnalysis);
        else logAnalysis();
        const answer: Analysis = {
          analysis: result.analysis,
          recommendedAction: result.recommendedAction,
          model: result.model,
          ...(result.reason ? { reason: result.reason } : {}),
          ...(result.modelSeverity ? { modelSeverity: result.modelSeverity } : {}),
          ...(result.modelDisagreed !== undefined ? { modelDisagreed: result.modelDisagreed } : {}),
        };
        answers.set(offset, answer);
      }),
    );
    await audit.flush();
    return answers;
  };
  const digest: EnrichmentService = async (requests, trace) => {
    const entries = [...requests].map(([offset, raw], i) => ({ offset, id: `digest-${i}`, request: raw as DigestRequest }));
    const summaries = await digestLlm.summarizeDigests(
      entries.map(({ id, request }) => ({
        id,
        agent: 'digest',
        portfolioName: request.portfolioName,
        hourStart: request.draft.hourStart,
        findingCount: request.draft.findingCount,
        bySeverity: request.draft.bySeverity,
        topFindings: request.draft.topFindings,
      })),
      trace ? { traces: entries.map(({ offset }) => trace(offset)) } : {},
    );
    await audit.flush();
    const byId = new Map(summaries.map((s) => [s.id, s]));
    return new Map(
      entries.flatMap(({ offset, id }) => {
        const s = byId.get(id);
        return s ? [[offset, { summary: s.summary, model: s.model } satisfies DigestAnswer] as const] : [];
      }),
    );
  };
  return {
    services: { analysis, digest },
    async close() {
      llm.close();
      if (digestLlm !== llm) digestLlm.close();
      await budgetStore.close();
      await audit.close();
      await client.close();
    },
  };
}
