/**
 * The market fleet's enrichment services, as topologies/market-signals.ts declares them: `analysis` (alert
 * analysis, one Messages call per finding) and `digest` (summaries through the Message Batches API). Each calls with
 * its own Anthropic key when one is set (AS_ANTHROPIC_API_KEY_ANALYST / _DIGEST, else ANTHROPIC_API_KEY), so a key
 * can be revoked, rate-limited and billed per agent type. Where the service cannot answer, the answer is the
 * rules-only one and says why; budgets, retries, the circuit and the audit are the runtime's (`deps.llm`).
 */
import type { EnrichmentService, ServiceDeps } from '../../runtime/index.ts';
import { alertIdOf, type AnalysisRequest } from '../alert-analyst.ts';
import type { DigestAnswer, DigestRequest } from '../digest.ts';
import { createAnalyst, type Analyst, type AnalystOptions } from './analyst.ts';
import { defaultModelTiers } from './tiers.ts';

function analystFor(deps: ServiceDeps, apiKey: string, options: AnalystOptions): Analyst {
  const models = { ...defaultModelTiers, ...options.models };
  return createAnalyst(deps.llm({ apiKey, models: [models.triage, models.strong] }), options);
}

/** `analysis`: the alert analyst's question about each finding, answered by the model or by the rules. */
export function analysisService(options: AnalystOptions = {}) {
  return (deps: ServiceDeps): EnrichmentService => {
    const anthropic = deps.config.anthropic;
    const analyst = analystFor(deps, anthropic.analystApiKey || anthropic.apiKey, options);
    return async (requests, trace) => {
      const answers = new Map<string, unknown>();
      await Promise.all(
        [...requests].map(async ([offset, raw]) => {
          const { finding, portfolioName } = raw as AnalysisRequest;
          const record = trace?.(offset);
          const answer = await analyst.analyzeFinding(
            {
              id: finding.findingId,
              agent: finding.agent,
              rule: finding.rule,
              symbol: finding.symbol,
              severity: finding.severity,
              evidence: finding.evidence,
              summary: finding.summary,
            },
            { agent: finding.agent, portfolioName, ...(record ? { trace: record } : {}) },
          );
          // One line per analysed finding, correlated by the finding, the alert it becomes, the input record and (under
          // the record's trace context) its trace.
          deps.log(
            'llm.analysis',
            {
              offset,
              findingId: finding.findingId,
              alertId: alertIdOf(finding.findingId),
              agent: finding.agent,
              model: answer.model,
              ...(answer.reason ? { reason: answer.reason } : {}),
              ...(answer.modelDisagreed ? { modelDisagreed: true } : {}),
            },
            record,
          );
          answers.set(offset, answer);
        }),
      );
      return answers;
    };
  };
}

/**
 * `digest`: each hour's draft summarised in one Message Batch. A draft the model did not summarise gets no answer,
 * and the digest writer writes the rules-only digest (with the portfolio's alert count, which only it knows).
 */
export function digestService(options: AnalystOptions = {}) {
  return (deps: ServiceDeps): EnrichmentService => {
    const anthropic = deps.config.anthropic;
    const analyst = analystFor(deps, anthropic.digestApiKey || anthropic.apiKey, options);
    return async (requests, trace) => {
      const entries = [...requests].map(([offset, raw], i) => ({
        offset,
        id: `digest-${i}`,
        request: raw as DigestRequest,
      }));
      const summaries = await analyst.summarizeDigests(
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
      const byId = new Map(summaries.map((s) => [s.id, s]));
      return new Map(
        entries.flatMap(({ offset, id }) => {
          const s = byId.get(id);
          return s && s.reason === undefined
            ? [[offset, { summary: s.summary, model: s.model } satisfies DigestAnswer] as const]
            : [];
        }),
      );
    };
  };
}
